"""Data half of the pipeline: raw layout, importer, sample, ingest, categorize, convert, split, validate."""
