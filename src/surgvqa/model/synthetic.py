"""A synthetic GPU-sized base: a randomly initialised Qwen2-VL with the exact dimensions of Qwen/Qwen2-VL-2B-Instruct.

Why it exists: throughput and memory depend on a model's shapes, not on its weights. Where the Hub cannot be
reached (an offline GPU runner, CI), `model.base: synthetic-qwen2-vl-2b` builds the real 2B architecture
offline, so the engine and training can be timed and sized at full scale. Its answers mean nothing: use it
for speed and memory, never for accuracy. The tokenizer, chat template and image processor are the tiny
base's (tiny.py).

The heavy imports (torch, transformers, tiny.py) stay inside the functions, so that naming `SYNTHETIC_BASE`
(base.py, the params docs) costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from surgvqa.model.processor import ImageOnlyQwen2VLProcessor

# The value of `model.base` that builds this base (base.py).
SYNTHETIC_BASE = "synthetic-qwen2-vl-2b"

# The tokenizer is trained locally (the real one is on the Hub). Its size only decides how prompts split into
# ids, not the model's size: the embedding keeps the real model's 151936 rows, so the weights, the logits and
# the memory are the real ones. 1024 is the tiny base's size and trains in about a second; on the embedded
# data it stops near 730 tokens (the corpus has no more merges to learn) and splits the prompts into about
# 3.9 characters per token, close to the ~4 usual for large English BPE vocabularies such as Qwen's, so the
# work per question is of the real order. Ids it lacks decode to nothing, like the real model's spare rows.
TOKENIZER_VOCAB = 1024


@dataclass(frozen=True)
class TextDims:
    """The language model's sizes."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    rope_theta: float
    mrope_section: tuple[int, int, int]  # head_dim/2 split over (time, height, width)
    tie_word_embeddings: bool
    max_position_embeddings: int
    rms_norm_eps: float


@dataclass(frozen=True)
class VisionDims:
    """The vision tower's sizes; `hidden_size` is what its patch merger outputs (the language model's width)."""

    depth: int
    embed_dim: int
    num_heads: int
    mlp_ratio: int
    hidden_size: int
    patch_size: int
    spatial_merge_size: int
    temporal_patch_size: int


@dataclass(frozen=True)
class Qwen2VLDims:
    """A Qwen2-VL checkpoint's dimensions."""

    text: TextDims
    vision: VisionDims


# Qwen/Qwen2-VL-2B-Instruct's config.json. The Hub is out of reach here; the values were checked against
# copies of it: github.com/IMvision12/keras-vision-models kmodels/models/qwen2_vl/config.py
# (QWEN2_VL_MODEL_CONFIG["Qwen2VL2B"], which converts the Hub checkpoint; every value below matches), and its
# language model is Qwen2-1.5B's (hidden 1536, intermediate 8960, 28 layers, 12/2 heads, vocab 151936,
# rope theta 1e6, tied embeddings). The parameter count below is the independent check: these dimensions give
# exactly the Hub checkpoint's count (tests/model/test_synthetic.py).
QWEN2_VL_2B = Qwen2VLDims(
    text=TextDims(vocab_size=151936, hidden_size=1536, intermediate_size=8960, layers=28, heads=12, kv_heads=2,
                  rope_theta=1_000_000.0, mrope_section=(16, 24, 24), tie_word_embeddings=True,
                  max_position_embeddings=32768, rms_norm_eps=1e-6),
    vision=VisionDims(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=1536, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2),
)

# Parameters of Qwen/Qwen2-VL-2B-Instruct (BF16, the tied head counted once): the Hub's safetensors metadata,
# `HfApi().get_safetensors_metadata("Qwen/Qwen2-VL-2B-Instruct").parameter_count["BF16"]`, as recorded in
# github.com/floschne/gimmick src/gimmick/models/__init__.py (get_model_sizes); MTEB's model metadata gives the
# same n_parameters for Qwen2-VL-2B fine-tunes (VLM2Vec/VLM2Vec-V2.0, llamaindex/vdr-2b-multi-v1). At 2 bytes
# each that is 4,417,971,200 bytes of bfloat16 weights (derived; the index file itself was not at hand).
QWEN2_VL_2B_PARAMETERS = 2_208_985_600


def synthetic_config(tokenizer: PreTrainedTokenizerFast) -> Qwen2VLConfig:
    """The real 2B model's config, special-token ids taken from `tokenizer`. vocab_size stays 151936 although the
    tokenizer is smaller: the real model's embedding is larger than its tokenizer too (151936 rows, while its
    last special token is id 151656)."""
    from surgvqa.model.tiny import qwen2_vl_config

    t, v = QWEN2_VL_2B.text, QWEN2_VL_2B.vision
    text = dict(vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                num_hidden_layers=t.layers, num_attention_heads=t.heads, num_key_value_heads=t.kv_heads,
                max_position_embeddings=t.max_position_embeddings, rms_norm_eps=t.rms_norm_eps,
                rope_parameters={"rope_type": "default", "rope_theta": t.rope_theta,
                                 "mrope_section": list(t.mrope_section)})
    vision = dict(depth=v.depth, embed_dim=v.embed_dim, hidden_size=v.hidden_size, num_heads=v.num_heads,
                  mlp_ratio=v.mlp_ratio, patch_size=v.patch_size, spatial_merge_size=v.spatial_merge_size,
                  temporal_patch_size=v.temporal_patch_size)
    return qwen2_vl_config(tokenizer, text, vision, tie_word_embeddings=t.tie_word_embeddings)


def synthetic_model(config: Qwen2VLConfig, dtype: torch.dtype, device: torch.device | str
                    ) -> Qwen2VLForConditionalGeneration:
    """The model with random weights, created directly in `dtype` on `device`: no float32 copy first, and no
    copy on the CPU when the device is a GPU (2.2 B parameters). `meta` allocates nothing."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    with torch.device(device):
        return Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)


def meta_model(tokenizer: PreTrainedTokenizerFast) -> Qwen2VLForConditionalGeneration:
    """The synthetic model on the meta device: every shape, no memory (to count parameters)."""
    import torch

    return synthetic_model(synthetic_config(tokenizer), torch.float32, "meta")


def parameter_count(model) -> int:
    """Distinct parameters (a tied head counted once, as in the checkpoint)."""
    return sum(p.numel() for p in model.parameters())


def synthetic_base(corpus: list[str], image_pixels: int, seed: int, dtype: torch.dtype,
                   device: torch.device | str) -> tuple[Qwen2VLForConditionalGeneration, ImageOnlyQwen2VLProcessor]:
    """The random 2B model on `device` in `dtype`, and its processor (the tiny base's tokenizer and processor)."""
    import torch

    from surgvqa.model.tiny import build_processor, train_tokenizer

    tokenizer = train_tokenizer(corpus, TOKENIZER_VOCAB)
    torch.manual_seed(seed)
    model = synthetic_model(synthetic_config(tokenizer), dtype, device)
    return model.eval(), build_processor(tokenizer, image_pixels)


def build_synthetic(out_dir: Path, corpus: list[str], image_pixels: int, seed: int, dtype: torch.dtype) -> Path:
    """Write the random 2B Qwen2-VL (safetensors, in `dtype`), its processor and chat template to out_dir."""
    from surgvqa.model.tiny import save_checkpoint

    model, processor = synthetic_base(corpus, image_pixels, seed, dtype, "cpu")
    return save_checkpoint(model, processor, out_dir)
