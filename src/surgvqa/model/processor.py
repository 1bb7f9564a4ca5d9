"""The Qwen2-VL processor without a video processor, and the real Qwen2-VL chat template and special tokens.

`Qwen2VLProcessor` insists on a video processor, which needs torchvision; there is no CPU torchvision for the
pinned torch. Images are all this project feeds the model, so the processor here declares only an image
processor and a tokenizer. It loads the tiny base and `Qwen/Qwen2-VL-2B-Instruct` alike.
"""

from __future__ import annotations

from pathlib import Path

from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

from surgvqa.errors import SurgvqaError

# The chat template of Qwen/Qwen2-VL-*-Instruct, verbatim (chat_template.json on the Hub).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# Qwen2-VL's special tokens, in their Hub order (ids 151643-151656 in the real vocabulary).
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
END_OF_TURN = "<|im_end|>"
PAD = "<|endoftext|>"


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2VLProcessor with an image processor and a tokenizer only (no video processor, so no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


def load_processor(path: str | Path, image_pixels: int, revision: str | None,
                   trust_remote_code: bool) -> ImageOnlyQwen2VLProcessor:
    """Load the processor of a Qwen2-VL checkpoint, sized so every image becomes `image_pixels` pixels at most."""
    try:
        proc = ImageOnlyQwen2VLProcessor.from_pretrained(
            str(path), revision=revision, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise SurgvqaError(f"could not load a Qwen2-VL processor from {path}: {e}") from e
    if proc.image_processor is None or proc.tokenizer is None:
        raise SurgvqaError(f"{path} has no Qwen2-VL image processor and tokenizer (got {type(proc).__name__})")
    proc.image_processor.size = {"shortest_edge": min(image_pixels, 56 * 56), "longest_edge": image_pixels}
    if proc.tokenizer.convert_tokens_to_ids(END_OF_TURN) in (None, proc.tokenizer.unk_token_id):
        raise SurgvqaError(f"{path}: the tokenizer has no {END_OF_TURN} token; is this a Qwen2-VL checkpoint?")
    return proc
