"""Training: one stage of one approach, the three approaches, the overfit sanity check, adapter verification."""
