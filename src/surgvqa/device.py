"""Device and dtype chosen from the environment, never assumed: the same code runs on a GPU runner and on CPU."""

from __future__ import annotations

import torch

from surgvqa import distributed
from surgvqa.errors import SurgvqaError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` means CUDA when present, then Apple MPS, then CPU; anything else is used as given. Started by a
    launcher as several processes, each takes the GPU of its local rank (`auto` and `cuda` alike)."""
    if requested == "auto":
        mps = getattr(torch.backends, "mps", None)
        requested = ("cuda" if torch.cuda.is_available()
                     else "mps" if mps is not None and mps.is_available() else "cpu")
    device = torch.device(requested)
    if device.type != "cuda" or not distributed.launched():
        return device
    local = distributed.local_index()
    if device.index is not None and device.index != local:
        # Every process would load onto the one GPU named: no speed-up, and likely out of memory.
        raise SurgvqaError(f"model.device is {requested}, but this is process {local} of several on this "
                           f"machine, which uses cuda:{local}: set model.device to cuda (or auto)")
    return torch.device("cuda", local)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on a GPU that has it, float16 on an older GPU (a 7B model in float32 would not fit),
    float32 on CPU (half precision is slow or lossy there)."""
    if requested != "auto":
        return _DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
