"""Device and dtype chosen from the environment, never assumed: the same code runs on a GPU runner and on CPU."""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` means CUDA when present, then Apple MPS, then CPU; anything else is used as given."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on a GPU that has it, float16 on an older GPU (a 7B model in float32 would not fit),
    float32 on CPU (half precision is slow or lossy there)."""
    if requested != "auto":
        return _DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
