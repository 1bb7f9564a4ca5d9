"""Batch-level inference on one base model with several adapters loaded by name.

One copy of the base stays in memory; `set_adapter` switches between adapters, and callers run everything
under `torch.inference_mode()` (set_adapter marks the active adapter trainable, which must not matter then).
Three decoding rules, all greedy: free generation, generation constrained to a prefix tree of candidates,
and scoring every candidate by its log-likelihood in one forward pass.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.infer.constrained import CandidateTrie, candidate_ids, prefix_allowed_fn
from surgvqa.model.processor import END_OF_TURN
from surgvqa.model.sft import IGNORE_INDEX, chat_text, load_image


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
    texts = [chat_text(processor, p, system).replace(
        processor.image_token, processor.replace_image_token({"image_grid_thw": seen[img][0]}, 0), 1)
        for img, p in prompts]
    enc = tok(texts, padding=True)
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
                   tries: list[CandidateTrie] | None = None, cache: ImageCache | None = None) -> list[str]:
    """Greedy answers for (image, prompt) pairs in one left-padded batch; with `tries`, row i stays in tries[i]."""
    tok = processor.tokenizer
    enc = encode_prompts(model, processor, prompts, system, cache)
    config = greedy_config(tok, max_new_tokens)
    width = enc["input_ids"].shape[1]
    constraint = prefix_allowed_fn(tries, width, config.eos_token_id, tok.pad_token_id) if tries is not None else None
    out = model.generate(**enc, generation_config=config, prefix_allowed_tokens_fn=constraint)
    if tries is None:
        return [a.strip() for a in tok.batch_decode(out[:, width:], skip_special_tokens=True)]
    # A constrained answer is read back through its tree, so it is the candidate string itself, not a decode.
    answers = []
    for row, trie in zip(out[:, width:].tolist(), tries):
        ids = tuple(row[: row.index(config.eos_token_id) + 1]) if config.eos_token_id in row else tuple(row)
        if ids not in trie.answers:
            raise SurgvqaError(f"constrained generation stopped off its candidates ({ids}); this is a bug")
        answers.append(trie.answers[ids])
    return answers


def score_batch(model, processor, pairs: list[tuple[Path, str, str]], system: str | None, max_length: int,
                cache: ImageCache | None = None) -> list[float]:
    """Sum of the log-probabilities of each (image, prompt, candidate)'s answer tokens, in one forward pass.

    The answer is appended as training appends it (`candidate_ids`), and each image goes through the vision
    tower once (`cache`). The batch is left-padded, so every answer ends at the last position and only the
    last few positions need logits (a full [batch, length, vocabulary] tensor is gigabytes on the real model).
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    tok = processor.tokenizer
    seen = (cache or ImageCache(0)).features(model, processor, [img for img, _, _ in pairs])
    ids, labels = [], []
    for img, prompt, cand in pairs:
        text = chat_text(processor, prompt, system).replace(
            processor.image_token, processor.replace_image_token({"image_grid_thw": seen[img][0]}, 0), 1)
        prompt_ids, answer_ids = tok(text).input_ids, candidate_ids(tok, cand)
        if len(prompt_ids) + len(answer_ids) > max_length:
            raise SurgvqaError(f"a scored sequence is {len(prompt_ids) + len(answer_ids)} tokens, above "
                               f"evaluate.max_length={max_length}: raise it or lower model.image_pixels")
        ids.append(prompt_ids + answer_ids)
        labels.append([IGNORE_INDEX] * len(prompt_ids) + answer_ids)
    width, device = max(map(len, ids)), _device(model)
    pad = [width - len(row) for row in ids]
    input_ids = [[tok.pad_token_id] * n + row for n, row in zip(pad, ids)]
    target_rows = torch.tensor([[IGNORE_INDEX] * n + row for n, row in zip(pad, labels)])
    keep = int((target_rows != IGNORE_INDEX).sum(dim=1).max()) + 1
    logits = model(input_ids=torch.tensor(input_ids, device=device),
                   attention_mask=torch.tensor([[0] * n + [1] * len(row) for n, row in zip(pad, ids)], device=device),
                   mm_token_type_ids=torch.tensor(processor.create_mm_token_type_ids(input_ids), device=device),
                   image_grid_thw=torch.cat([seen[img][0] for img, _, _ in pairs]).to(device),
                   mm_encoder_outputs={"image": BaseModelOutputWithPooling(
                       pooler_output=tuple(seen[img][1] for img, _, _ in pairs))},
                   logits_to_keep=keep).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = target_rows[:, -keep + 1:].to(device)
    mask = target != IGNORE_INDEX
    token_logp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(dim=1).tolist()
