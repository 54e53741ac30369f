"""Graph rewrites: sparsify and strip (they know nothing of training)."""
