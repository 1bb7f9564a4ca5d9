"""`model`: the base model (the embedded tiny Qwen2-VL, the synthetic 2B, a Hugging Face id or a local path) and how
to load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from surgvqa.params.typed import ParamsError

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass
class TinyBaseParams:
    """The embedded tiny Qwen2-VL: sizes, and the short description pretraining that stands in for a real VLM's.

    `seed` also seeds the random weights of the synthetic 2B base (`model.base: synthetic-qwen2-vl-2b`), whose
    other sizes are the real model's and are not read from here."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    vision_layers: int
    vision_dim: int
    vision_heads: int
    pretrain_epochs: float
    pretrain_learning_rate: float
    pretrain_batch_size: int
    seed: int

    def __post_init__(self) -> None:
        head_dim, rem = divmod(self.hidden_size, self.heads)
        if rem or head_dim % 4 or self.heads % self.kv_heads:
            raise ParamsError("hidden_size/heads: head_dim must be a whole multiple of 4 and heads a multiple of "
                              f"kv_heads (got hidden_size {self.hidden_size}, heads {self.heads}, "
                              f"kv_heads {self.kv_heads})")
        if self.vision_dim % self.vision_heads:
            raise ParamsError(f"vision_dim: must be divisible by vision_heads, "
                              f"got {self.vision_dim}/{self.vision_heads}")
        if self.pretrain_epochs < 0:
            raise ParamsError(f"pretrain_epochs: must be >= 0, got {self.pretrain_epochs}")


@dataclass
class ModelParams:
    """The base model: `tiny` or `synthetic-qwen2-vl-2b` (both built offline) or a Hugging Face id or local path,
    and how to load it. The synthetic base is a random Qwen2-VL with Qwen/Qwen2-VL-2B-Instruct's exact dimensions,
    for measuring speed and memory where the Hub cannot be reached (model/synthetic.py); its answers mean nothing."""

    base: str  # tiny | synthetic-qwen2-vl-2b | a Hugging Face id | a local path
    revision: str | None  # a Hub revision (branch, tag or commit) for a Hub id
    dtype: Dtype  # auto: bfloat16/float16 on a GPU, float32 on CPU
    device: str  # auto picks cuda, then mps, then cpu
    quantize: Literal["none", "4bit"]  # 4bit: QLoRA (NF4, double quantization, vision tower and head kept)
    compute_dtype: Dtype  # the 4-bit layers' compute dtype
    image_pixels: int  # each image becomes at most this many pixels
    trust_remote_code: bool
    tiny: TinyBaseParams

    def __post_init__(self) -> None:
        if self.image_pixels < 56 * 56:
            raise ParamsError("image_pixels: must be at least 56*56 = 3136 (Qwen2-VL's minimum), "
                              f"got {self.image_pixels}")
