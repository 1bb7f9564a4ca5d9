"""The release: merge into the full-precision base, evaluate the merged candidate, gate it, register it."""
