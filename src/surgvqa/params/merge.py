"""`merge`: how adapters are merged into the full-precision base, and how the merge's fidelity is probed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from surgvqa.params.typed import ParamsError


@dataclass
class MergeParams:
    """The merged weights' dtype, what the LoRA delta is added onto, and the size of the logit probe."""

    dtype: Literal["float32", "bfloat16"]
    # original: the full-precision base weights; nf4_roundtrip: the base weights quantized to NF4 and back, so a
    # QLoRA adapter lands on the weights it was trained against (only for adapters trained on a 4-bit base).
    onto: Literal["original", "nf4_roundtrip"]
    probe_items: int  # test items whose full logits are compared between merged and base + adapter

    def __post_init__(self) -> None:
        if self.probe_items < 1:
            raise ParamsError(f"probe_items: must be at least 1, got {self.probe_items}")
