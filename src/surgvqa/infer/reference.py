"""The straightforward evaluator the engine is checked and benchmarked against.

It does what the prototype did: one base model loaded per stage adapter, one question at a time, images in
turn, each through the processor and the vision tower as given. It applies the same decoding rule and the
same prompts (with the same context), so its predictions must equal the engine's; `bench/bench_engine.py`
times the two side by side.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from surgvqa.infer.constrained import CandidateTrie, prefix_allowed_fn
from surgvqa.infer.engine import Answerer, Item, context_prompt, earlier_in_image
from surgvqa.infer.generate import greedy_config
from surgvqa.model.prompts import render_prompt
from surgvqa.model.sft import IGNORE_INDEX, Example, chat_text, encode, load_image
from surgvqa.params.evaluate import EvalParams
from surgvqa.params.model import ModelParams
from surgvqa.params.prompt import PromptParams


def load_separate(base_dir: Path, adapters: dict[str, Path], model_params: ModelParams) -> dict[str, object]:
    """A fresh base model per adapter (the memory cost the engine avoids)."""
    from peft import PeftModel

    from surgvqa.model.load import base_record, load_base

    models = {}
    for name, path in adapters.items():
        base, _ = load_base(base_record(base_dir), model_params)
        models[name] = PeftModel.from_pretrained(base, str(path)).eval()
    return models


def answer_one(model, processor, image: Path, prompt: str, system: str | None, max_new_tokens: int,
               trie: CandidateTrie | None) -> str:
    """One greedy answer, the plain way: processor(text, image) then generate()."""
    tok = processor.tokenizer
    enc = processor(text=[chat_text(processor, prompt, system)], images=[load_image(image)],
                    return_tensors="pt").to(next(model.parameters()).device)
    config = greedy_config(tok, max_new_tokens)
    width = enc["input_ids"].shape[1]
    constraint = prefix_allowed_fn([trie], width, config.eos_token_id, tok.pad_token_id) if trie is not None else None
    out = model.generate(**enc, generation_config=config, prefix_allowed_tokens_fn=constraint)
    return tok.decode(out[0, width:], skip_special_tokens=True).strip()


def score_one(model, processor, image: Path, prompt: str, candidate: str, system: str | None,
              max_length: int) -> float:
    """The summed log-probability of one candidate's tokens, the plain way: the training encoder, one forward."""
    import torch

    enc = encode(processor, Example(image, prompt, candidate), max_length, system)
    device = next(model.parameters()).device
    logits = model(input_ids=enc["input_ids"][None].to(device), pixel_values=enc["pixel_values"].to(device),
                   image_grid_thw=enc["image_grid_thw"].to(device),
                   mm_token_type_ids=enc["mm_token_type_ids"][None].to(device)).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    target = enc["labels"][1:].to(device)
    keep = target != IGNORE_INDEX
    return logp[keep].gather(-1, target[keep][:, None]).sum().item()


def reference_answers(models: dict[str, object], answerer: Answerer, items: list[Item],
                      adapter_of_stage: dict[int, str], mode: str, eval_params: EvalParams,
                      prompt_params: PromptParams) -> list[str]:
    """Answer items one by one, image by image, stage by stage; `answerer.models` is not used, `models` are."""
    import torch

    by_image: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_image[it.img_id].append(i)
    preds: dict[int, str] = {}
    with torch.inference_mode(), tqdm(total=len(items), desc=f"reference {mode}", unit="QA") as bar:
        for indices in by_image.values():
            for i in sorted(indices, key=lambda j: items[j].stage):
                it = items[i]
                context = [(items[j].question, preds[j]) for j in earlier_in_image(items, indices, it.stage)
                           ] if mode == "context" else []
                prompt = context_prompt(render_prompt(it.question, answerer.prompt_candidates, prompt_params), context,
                                        eval_params)
                model = models[adapter_of_stage[it.stage]]
                system = prompt_params.system
                key = answerer.closed_set(it.question, eval_params.decoding)
                processor = answerer.processor
                if key and eval_params.decoding == "constrained":
                    trie = answerer.tries[key]
                    preds[i] = answer_one(model, processor, it.image, prompt, system, trie.depth, trie)
                elif key and eval_params.decoding == "score":
                    scores = [(score_one(model, processor, it.image, prompt, c, system, eval_params.max_length), c)
                              for c in answerer.choices[key]]
                    preds[i] = max(scores, key=lambda vc: vc[0])[1]
                else:
                    preds[i] = answer_one(model, processor, it.image, prompt, system, eval_params.open_max_new_tokens,
                                          None)
                bar.update(1)
    return [preds[i] for i in range(len(items))]
