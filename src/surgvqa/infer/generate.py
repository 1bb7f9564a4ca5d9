"""Batched greedy answers from one base model with several adapters loaded by name.

One copy of the base stays in memory; `set_adapter` switches between adapters, and everything runs under
`torch.inference_mode()` (set_adapter marks the active adapter trainable, which must not matter here).
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from surgvqa.model.sft import Example, chat_text, load_image


def load_adapters(base_model, adapters: dict[str, Path]):
    """Wrap the base with every adapter, each under its own name."""
    from peft import PeftModel

    names = list(adapters)
    model = PeftModel.from_pretrained(base_model, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    model.eval()
    return model


def generate_answers(model, processor, examples: list[Example], adapter: str | None, batch_size: int = 16,
                     max_new_tokens: int = 24, system: str | None = None, desc: str = "answering") -> list[str]:
    """Greedy answers for examples (left-padded batches), with `adapter` active (None: the model as it is)."""
    import torch

    if adapter is not None:
        model.set_adapter(adapter)
    tok = processor.tokenizer
    tok.padding_side = "left"  # generation appends on the right, so padding must sit on the left
    device = next(model.parameters()).device
    answers: list[str] = []
    with torch.inference_mode(), tqdm(total=len(examples), desc=desc, unit="QA", dynamic_ncols=True) as bar:
        for i in range(0, len(examples), batch_size):
            batch = examples[i: i + batch_size]
            enc = processor(text=[chat_text(processor, e.prompt, system) for e in batch],
                            images=[load_image(e.image) for e in batch], padding=True, return_tensors="pt").to(device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            answers += [a.strip() for a in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
            bar.update(len(batch))
    return answers
