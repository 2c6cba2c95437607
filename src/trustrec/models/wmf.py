"""wmf model (being written)."""
