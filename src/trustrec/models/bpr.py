"""bpr model (being written)."""
