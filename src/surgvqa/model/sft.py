"""Supervised fine-tuning examples with answer-only labels, and the collator that batches them.

Labels are -100 everywhere except the answer and the end-of-turn token that closes it: the system prompt, the
user turn, the image placeholder tokens and padding carry no loss. The prompt is encoded by the processor
(which expands the image placeholder to the right number of tokens) and the answer is appended as token ids,
so no tokenizer merge can blur the boundary between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from surgvqa.errors import SurgvqaError
from surgvqa.io import image_relpath
from surgvqa.model.processor import END_OF_TURN

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One (image, prompt, answer) triple; the image path was rebuilt from a checked img_id."""

    image: Path
    prompt: str
    answer: str


def load_image(path: Path) -> Image.Image:
    """Decode an image as RGB; an unreadable image is an error, never replaced by a blank one."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise SurgvqaError(f"cannot read image {path}: {e}; re-run `dvc repro ingest` to quarantine it") from e


def image_of(raw_dir: Path, img_id: str) -> Path:
    """The image file of an img_id, refusing ids that could step outside raw_dir."""
    return raw_dir / image_relpath(img_id)


def chat_text(processor, prompt: str, system: str | None = None) -> str:
    """The chat-templated prompt up to and including the assistant header."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]})
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode(processor, example: Example, max_length: int, system: str | None = None) -> dict[str, torch.Tensor]:
    """Token ids, answer-only labels, mm_token_type_ids and pixel values of one example (unpadded)."""
    enc = processor(text=[chat_text(processor, example.prompt, system)], images=[load_image(example.image)],
                    return_tensors="pt")
    answer_ids = processor.tokenizer(example.answer + END_OF_TURN, add_special_tokens=False,
                                     return_tensors="pt").input_ids[0]
    prompt_ids = enc["input_ids"][0]
    length = len(prompt_ids) + len(answer_ids)
    if length > max_length:
        # Truncating would cut the image tokens or the answer and train on a broken example.
        raise SurgvqaError(f"an example is {length} tokens, above train.max_length={max_length} ({example.image}, "
                           f"{example.prompt[:60]!r}): raise train.max_length or lower model.image_pixels")
    mm = enc.get("mm_token_type_ids")
    return {
        "input_ids": torch.cat([prompt_ids, answer_ids]),
        "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids]),
        "mm_token_type_ids": torch.cat([mm[0], torch.zeros_like(answer_ids)]) if mm is not None else None,
        "pixel_values": enc["pixel_values"],
        "image_grid_thw": enc["image_grid_thw"],
    }


class SFTDataset(torch.utils.data.Dataset):
    """Examples encoded on access (images are decoded per step, so memory stays flat on the real dataset)."""

    def __init__(self, examples: list[Example], processor, max_length: int, system: str | None = None):
        self.examples, self.processor, self.max_length, self.system = examples, processor, max_length, system

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return encode(self.processor, self.examples[i], self.max_length, self.system)


@dataclass
class Collator:
    """Pads a batch (right for training, left for scoring): pad id in input_ids, 0 in the mask, -100 in labels."""

    pad_id: int
    left: bool = False

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)

        def span(n: int) -> slice:
            return slice(width - n, width) if self.left else slice(0, n)

        def pad(key: str, value: int) -> torch.Tensor:
            out = torch.full((len(batch), width), value, dtype=batch[0][key].dtype)
            for i, b in enumerate(batch):
                out[i, span(len(b[key]))] = b[key]
            return out

        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            attention[i, span(len(b["input_ids"]))] = 1
        out = {"input_ids": pad("input_ids", self.pad_id), "attention_mask": attention,
               "labels": pad("labels", IGNORE_INDEX),
               "pixel_values": torch.cat([b["pixel_values"] for b in batch]),
               "image_grid_thw": torch.cat([b["image_grid_thw"] for b in batch])}
        if batch[0]["mm_token_type_ids"] is not None:
            out["mm_token_type_ids"] = pad("mm_token_type_ids", 0)
        return out
