"""Batch-level inference on one base model with several adapters loaded by name.

One copy of the base stays in memory; `set_adapter` switches between adapters, and callers run everything
under `torch.inference_mode()` (set_adapter marks the active adapter trainable, which must not matter then).
Free greedy generation (open questions) lives here; constrained generation and candidate scoring, which
share prompt prefixes across rows, are in `shared_prefix.py`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from surgvqa.model.processor import END_OF_TURN
from surgvqa.model.sft import chat_text, load_image


def load_adapters(base_model, adapters: dict[str, Path]):
    """Wrap the base with every adapter, each under its own name."""
    from peft import PeftModel

    names = list(adapters)
    model = PeftModel.from_pretrained(base_model, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    model.eval()
    return model


def _device(model):
    return next(model.parameters()).device


class ImageCache:
    """The image grid and vision-tower features of recently seen images, least recently used dropped first.

    A test image carries about nine questions, answered over three stage passes and two modes; without the
    cache the processor and the vision tower would redo it each time. The features do not depend on the
    adapter, since LoRA sits in the language model only. `size` bounds memory on the full dataset.
    """

    def __init__(self, size: int = 128):
        self.size = size
        self._seen: OrderedDict[Path, tuple] = OrderedDict()

    def features(self, model, processor, images: list[Path]) -> dict[Path, tuple]:
        """(image_grid_thw, features) for each distinct image, computing the ones not cached in one call."""
        import torch

        missing = [img for img in dict.fromkeys(images) if img not in self._seen]
        if missing:
            pixels = [processor.image_processor(images=[load_image(img)], return_tensors="pt") for img in missing]
            grids = torch.cat([p["image_grid_thw"] for p in pixels])
            device = _device(model)
            feats = model.get_image_features(torch.cat([p["pixel_values"] for p in pixels]).to(device),
                                             grids.to(device), return_dict=True).pooler_output
            for img, grid, f in zip(missing, grids, feats):
                self._seen[img] = (grid.unsqueeze(0), f)
        out = {}
        for img in dict.fromkeys(images):
            self._seen.move_to_end(img)
            out[img] = self._seen[img]
        while len(self._seen) > max(self.size, len(out)):
            self._seen.popitem(last=False)
        return out


def expanded_texts(processor, prompts: list[tuple[Path, str]], system: str | None, seen: dict[Path, tuple]
                   ) -> list[str]:
    """The chat text of each (image, prompt) with its image placeholder expanded to the image's token count."""
    return [chat_text(processor, p, system).replace(
        processor.image_token, processor.replace_image_token({"image_grid_thw": seen[img][0]}, 0), 1)
        for img, p in prompts]


def encode_prompts(model, processor, prompts: list[tuple[Path, str]], system: str | None,
                   cache: ImageCache | None = None) -> dict:
    """Left-padded model inputs for (image, prompt) pairs, each distinct image preprocessed and seen by the
    vision tower once (and not again while it stays in `cache`).

    The vision features go to generate() as `mm_encoder_outputs`. Token ids equal what
    `processor(text, images)` returns (tests/infer/test_generate.py checks it).
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    tok = processor.tokenizer
    tok.padding_side = "left"  # generation appends on the right, so padding must sit on the left
    device = _device(model)
    seen = (cache or ImageCache(0)).features(model, processor, [img for img, _ in prompts])
    enc = tok(expanded_texts(processor, prompts, system, seen), padding=True)
    return {"input_ids": torch.tensor(enc["input_ids"], device=device),
            "attention_mask": torch.tensor(enc["attention_mask"], device=device),
            "mm_token_type_ids": torch.tensor(processor.create_mm_token_type_ids(enc["input_ids"]), device=device),
            "image_grid_thw": torch.cat([seen[img][0] for img, _ in prompts]).to(device),
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(
                pooler_output=tuple(seen[img][1] for img, _ in prompts))}}


def greedy_config(tokenizer, max_new_tokens: int):
    """Plain greedy decoding, whatever the checkpoint's generation_config.json says (Instruct checkpoints ship
    sampling and repetition-penalty defaults, which would bias a constrained choice)."""
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, repetition_penalty=1.0,
                            pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TURN))


def generate_batch(model, processor, prompts: list[tuple[Path, str]], system: str | None, max_new_tokens: int,
                   cache: ImageCache | None = None) -> list[str]:
    """Free greedy answers for (image, prompt) pairs in one left-padded batch (open questions; closed-set ones
    go through `shared_prefix.decode_constrained`)."""
    tok = processor.tokenizer
    enc = encode_prompts(model, processor, prompts, system, cache)
    out = model.generate(**enc, generation_config=greedy_config(tok, max_new_tokens))
    return [a.strip() for a in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
