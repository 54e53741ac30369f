# Two commands do all the set-up on a fresh machine:
#   make demo   train a small STR model on Fashion-MNIST, report, save
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
PYTEST_ARGS ?= -n 2

.PHONY: demo test test-all data venv

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Debian's Fashion-MNIST is the offline copy; installed when missing and root.
data:
	@if [ ! -f $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	      || echo "warning: could not install dataset-fashion-mnist"; \
	  else \
	    echo "note: Fashion-MNIST is not on disk; as root: apt-get install dataset-fashion-mnist"; \
	  fi; \
	fi

demo: venv data
	$(VPY) -m examples.demo

test: venv data
	$(VPY) -m pytest $(PYTEST_ARGS) -m "not slow" tests

test-all: venv data
	$(VPY) -m pytest $(PYTEST_ARGS) tests
