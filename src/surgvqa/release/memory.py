"""Freeing a model's memory before the next one loads: a release holds 2B-sized models one after another."""

from __future__ import annotations

import gc


def free_memory() -> None:
    """Collect what was deleted and return the CUDA cache, so the freed model's memory is available now."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
