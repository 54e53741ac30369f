"""Helpers around `fit`: weight decay, budget transfer, logging callbacks."""
