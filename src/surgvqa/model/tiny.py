"""The embedded default base: a small Qwen2-VL built offline through the real transformers classes.

Random weights, a byte-level BPE tokenizer trained locally with Qwen2-VL's special tokens, the real chat
template, and the PIL image processor (no torchvision). The output directory loads with `from_pretrained` and
no network, exactly like a Hub checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from surgvqa.model.processor import (
    END_OF_TURN,
    PAD,
    QWEN2_VL_CHAT_TEMPLATE,
    QWEN2_VL_SPECIAL_TOKENS,
    ImageOnlyQwen2VLProcessor,
)
from surgvqa.params.model import TinyBaseParams

# How wide the output head starts: logits of standard deviation ~3 instead of ~0.2, so that a frozen head
# (LoRA trains around it) can still express a confident answer; with the usual 0.02 init the loss of a LoRA
# on a random base stalls near 3.8.
HEAD_LOGIT_STD = 3.0


def train_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE (any text encodes, as with Qwen's) with Qwen2-VL's special tokens first."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(QWEN2_VL_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    extra = [t for t in QWEN2_VL_SPECIAL_TOKENS if t not in (END_OF_TURN, PAD)]
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=END_OF_TURN, pad_token=PAD,
                                   extra_special_tokens=extra, model_max_length=32768)


def tiny_config(tokenizer: PreTrainedTokenizerFast, tiny: TinyBaseParams) -> Qwen2VLConfig:
    """A Qwen2-VL config scaled down; mrope_section splits head_dim/2 over (time, height, width) as Qwen's does."""
    half = tiny.hidden_size // tiny.heads // 2
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    text = dict(vocab_size=len(tokenizer), hidden_size=tiny.hidden_size, intermediate_size=tiny.intermediate_size,
                num_hidden_layers=tiny.layers, num_attention_heads=tiny.heads, num_key_value_heads=tiny.kv_heads,
                max_position_embeddings=4096, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope})
    vision = dict(depth=tiny.vision_layers, embed_dim=tiny.vision_dim, hidden_size=tiny.hidden_size,
                  num_heads=tiny.vision_heads, mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    return qwen2_vl_config(tokenizer, text, vision, tie_word_embeddings=False)


def qwen2_vl_config(tokenizer: PreTrainedTokenizerFast, text: dict, vision: dict,
                    tie_word_embeddings: bool) -> Qwen2VLConfig:
    """A Qwen2-VL config of the given text and vision sizes, its special-token ids taken from `tokenizer`."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2_VL_SPECIAL_TOKENS}
    text = {**text, "bos_token_id": ids[PAD], "eos_token_id": ids[END_OF_TURN], "pad_token_id": ids[PAD]}
    return Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                         video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                         vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=tie_word_embeddings)


def build_processor(tokenizer: PreTrainedTokenizerFast, image_pixels: int) -> ImageOnlyQwen2VLProcessor:
    """The processor of a locally built base: the PIL image processor (no torchvision), `tokenizer` and the real
    Qwen2-VL chat template; each image becomes at most `image_pixels` pixels."""
    return ImageOnlyQwen2VLProcessor(
        Qwen2VLImageProcessorPil(min_pixels=min(image_pixels, 56 * 56), max_pixels=image_pixels), tokenizer,
        chat_template=QWEN2_VL_CHAT_TEMPLATE)


def save_checkpoint(model: Qwen2VLForConditionalGeneration, processor: ImageOnlyQwen2VLProcessor,
                    out_dir: Path) -> Path:
    """Write the model (safetensors), with the tokenizer's pad and end-of-turn ids as its generation defaults, and
    the processor to out_dir: a folder that loads with `from_pretrained` and no network."""
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny(out_dir: Path, corpus: list[str], tiny: TinyBaseParams, image_pixels: int) -> Path:
    """Write a random tiny Qwen2-VL (safetensors), its processor and chat template to out_dir."""
    tokenizer = train_tokenizer(corpus, tiny.vocab_size)
    processor = build_processor(tokenizer, image_pixels)
    torch.manual_seed(tiny.seed)
    model = Qwen2VLForConditionalGeneration(tiny_config(tokenizer, tiny))
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, HEAD_LOGIT_STD / math.sqrt(tiny.hidden_size))
    return save_checkpoint(model, processor, out_dir)
