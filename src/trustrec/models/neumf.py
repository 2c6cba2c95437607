"""neumf model (being written)."""
