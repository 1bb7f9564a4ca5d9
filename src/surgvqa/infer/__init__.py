"""Inference: batched generation with adapters switched by name."""
