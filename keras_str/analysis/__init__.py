"""Reports on a model's sparsity: data first, then tables and plots."""
