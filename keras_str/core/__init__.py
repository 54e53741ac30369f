"""What layers, methods and transforms all read: the kernel-layer table, model walks, MACs."""
