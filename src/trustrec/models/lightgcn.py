"""lightgcn model (being written)."""
