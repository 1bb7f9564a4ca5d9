"""The evaluation engine: route each question to its stage's adapter and answer in batches, with or without
the CXRTrek context passing.

- One base model in memory with the approach's adapters loaded by name, switched per stage.
- Routing uses the categorizer's stage for the question text (the assignment that labelled the training
  data), never the stage column of the file being evaluated.
- Context mode (CXRTrek's inference) answers stage 1 of every image first, then stage 2 with the image's
  stage-1 predictions as "Previous context:", then stage 3 with stages 1 and 2. Independent mode gives no
  context (the ablation).
- Closed-set questions decode under a constraint (`evaluate.decoding`: a prefix tree of the training
  answers, walked with each image's shared prompt prefix computed once, or scoring every candidate); open
  questions generate freely within a short budget.
- Under a launcher (`torchrun --nproc_per_node N`) each process answers a share of the images, every stage of
  each, so context passing stays inside one process; the predictions are gathered back into the items' order
  in every process.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from surgvqa import distributed
from surgvqa.data.questions import canonical_question
from surgvqa.errors import SurgvqaError
from surgvqa.infer.constrained import CandidateTrie
from surgvqa.infer.generate import ImageCache, generate_batch
from surgvqa.infer.shared_prefix import decode_constrained, score_candidates
from surgvqa.model.prompts import render_prompt
from surgvqa.names import EVAL_MODES, STAGE_IDS
from surgvqa.params.evaluate import EvalParams
from surgvqa.params.prompt import PromptParams


@dataclass(frozen=True)
class Item:
    """One question about one image, with the stage the categorizer routes it to (no gold answer here)."""

    img_id: str
    image: Path
    question: str
    stage: int


class AdapterModels:
    """One base model with the approach's adapters loaded by name (base + adapters): `use` switches adapter.

    The image cache is shared by every adapter: LoRA sits in the language model only, so the vision features
    do not depend on which adapter is active."""

    def __init__(self, peft_model):
        self.peft_model = peft_model
        self.images = ImageCache()

    def use(self, name: str):
        """The model answering as adapter `name`, and its image cache."""
        self.peft_model.set_adapter(name)
        return self.peft_model, self.images


class MergedModels:
    """Merged models by name (a released candidate: one per stage, or one for all): `use` picks one.

    Each model has its own image cache: they are separate copies, so nothing assumes their vision towers agree."""

    def __init__(self, models: dict[str, object]):
        self.models = models
        self.images = {name: ImageCache() for name in models}

    def use(self, name: str):
        """The merged model `name`, and its image cache."""
        return self.models[name], self.images[name]


@dataclass(frozen=True)
class Answerer:
    """What the engine needs to answer: the models (base + adapters, or merged ones), the processor and the
    closed-set candidates."""

    models: AdapterModels | MergedModels
    processor: object
    choices: dict[str, list[str]]  # catalogue question -> whole candidate answers, from the training split
    tries: dict[str, CandidateTrie]  # catalogue question -> prefix tree of those answers' token ids
    prompt_candidates: dict[str, list[str]]  # catalogue question -> values listed in the prompt (as in training)

    def closed_set(self, question: str, decoding: str) -> str | None:
        """The catalogue key under which a question decodes constrained, or None when it generates freely."""
        key = canonical_question(question)
        return key if decoding != "free" and key in self.tries else None


def make_answerer(models: AdapterModels | MergedModels, processor, choices: dict[str, list[str]],
                  prompt_candidates: dict[str, list[str]]) -> Answerer:
    """An Answerer whose closed-set questions decode inside prefix trees of `choices` (the training answers)."""
    from surgvqa.infer.constrained import build_tries

    return Answerer(models, processor, choices, build_tries(processor.tokenizer, choices), prompt_candidates)


def context_prompt(prompt: str, context: list[tuple[str, str]], eval_params: EvalParams) -> str:
    """The prompt with earlier-stage (question, predicted answer) pairs before it; no context, no change."""
    if not context:
        return prompt
    lines = "\n".join(eval_params.context_line.format(question=q, answer=a) for q, a in context)
    return eval_params.context_template.format(context=lines, prompt=prompt)


def earlier_in_image(items: list[Item], indices: list[int], stage: int) -> list[int]:
    """The image's items from stages before `stage`, in stage order (file order within a stage)."""
    return sorted((j for j in indices if items[j].stage < stage), key=lambda j: (items[j].stage, j))


def _batches(seq: list, size: int):
    for i in range(0, len(seq), size):
        yield seq[i: i + size]


def _image_batches(jobs: list[tuple[int, Item, str]], size: int):
    """Batches of whole images, since an image's questions in one batch share one computation of their common
    prefix; images with similar shared prompts (the context) go together, so their prefixes pad little. An
    image with more than `size` questions is split."""
    by_image: dict[Path, list] = defaultdict(list)
    for job in jobs:
        by_image[job[1].image].append(job)
    shared = {image: len(os.path.commonprefix([p for _, _, p in image_jobs])) for image, image_jobs in by_image.items()}
    order = sorted(by_image.items(), key=lambda kv: (shared[kv[0]], str(kv[0])))
    batch: list = []
    for _, image_jobs in order:
        for part in _batches(image_jobs, size):
            if batch and len(batch) + len(part) > size:
                yield batch
                batch = []
            batch += part
    if batch:
        yield batch


def _answer_group(answerer: Answerer, model, images: ImageCache, jobs: list[tuple[int, Item, str]],
                  eval_params: EvalParams, system: str | None, out: dict[int, str], bar) -> None:
    """Answer jobs (index, item, prompt) that share a model, batch by batch, by the decoding rule of each."""
    closed = [j for j in jobs if answerer.closed_set(j[1].question, eval_params.decoding)]
    free = [j for j in jobs if not answerer.closed_set(j[1].question, eval_params.decoding)]
    if eval_params.decoding == "constrained":
        for batch in _image_batches(closed, eval_params.batch_size):
            tries = [answerer.tries[answerer.closed_set(it.question, "constrained")] for _, it, _ in batch]
            answers = decode_constrained(model, answerer.processor, [(it.image, p) for _, it, p in batch],
                                         system, tries, images)
            out.update({i: ans for (i, _, _), ans in zip(batch, answers)})
            bar.update(len(batch))
    elif eval_params.decoding == "score":
        options = {i: answerer.choices[answerer.closed_set(it.question, "score")] for i, it, _ in closed}
        pairs = [(i, it, p, c) for i, it, p in closed for c in options[i]]
        scores: dict[int, list[tuple[float, str]]] = defaultdict(list)
        for batch in _batches(pairs, eval_params.batch_size):
            values = score_candidates(model, answerer.processor, [(it.image, p, c) for _, it, p, c in batch],
                                      system, eval_params.max_length, images)
            for (i, _, _, c), v in zip(batch, values):
                scores[i].append((v, c))
            done = [i for i, _, _, _ in batch if len(scores[i]) == len(options[i])]
            bar.update(len(set(done)))
        # Highest log-likelihood wins; max() keeps the first of equals, the candidate that sorts first.
        out.update({i: max(s, key=lambda vc: vc[0])[1] for i, s in scores.items()})
    for batch in _batches(free, eval_params.batch_size):
        out.update({i: ans for (i, _, _), ans in zip(batch, generate_batch(
            model, answerer.processor, [(it.image, p) for _, it, p in batch], system,
            eval_params.open_max_new_tokens, images))})
        bar.update(len(batch))


def answer_items(answerer: Answerer, items: list[Item], adapter_of_stage: dict[int, str], mode: str,
                 eval_params: EvalParams, prompt_params: PromptParams, desc: str = "answering") -> list[str]:
    """Predictions for items, in their order; context mode passes each image's earlier predictions on.

    `adapter_of_stage` names the adapter (or merged model) of `answerer.models` that answers each stage. Under a
    launcher this process answers the items of its share of the images, and every process returns all of them."""
    if mode not in EVAL_MODES:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(EVAL_MODES)}")
    # By image, not by item: an image's stage-2 and stage-3 prompts need its stage-1 predictions. Sorted ids, so
    # every process computes the same shares whatever the items' order.
    images = set(distributed.share(sorted({it.img_id for it in items})))
    mine = [i for i, it in enumerate(items) if it.img_id in images]
    if distributed.launched():  # one line saying how the work is shared, and one bar, both the main process's
        shares = distributed.gather([(len(mine), len(images))])
        if distributed.is_main():
            print(f"{desc}: {len(shares)} processes answer {' + '.join(str(q) for q, _ in shares)} of {len(items)} "
                  f"questions ({' + '.join(str(i) for _, i in shares)} images)", file=sys.stderr, flush=True)
        desc = f"{desc} (main process's share)"
    preds = _answer_share(answerer, [items[i] for i in mine], adapter_of_stage, mode, eval_params, prompt_params,
                          desc)
    return _in_order(distributed.gather(list(zip(mine, preds))), len(items))


def _in_order(answered: list[tuple[int, str]], count: int) -> list[str]:
    """Every process's (item index, prediction) pairs as the predictions of items 0..count-1, in order."""
    by_index = dict(answered)
    if len(answered) != count or len(by_index) != count:  # indices come from range(count): only a miscount is wrong
        raise SurgvqaError(f"the processes answered {len(answered)} predictions for {len(by_index)} distinct items "
                           f"of {count}: their shares overlap or miss some; this is a bug")
    return [by_index[i] for i in range(count)]


def _answer_share(answerer: Answerer, items: list[Item], adapter_of_stage: dict[int, str], mode: str,
                  eval_params: EvalParams, prompt_params: PromptParams, desc: str) -> list[str]:
    """This process's predictions for items (whole images), in their order, stage by stage."""
    import torch

    preds: dict[int, str] = {}
    by_image: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_image[it.img_id].append(i)
    with torch.inference_mode(), tqdm(total=len(items), desc=desc, unit="QA", dynamic_ncols=True,
                                      disable=not distributed.is_main()) as bar:
        for stage in STAGE_IDS:
            groups: dict[str, list[tuple[int, Item, str]]] = defaultdict(list)
            for i, it in enumerate(items):
                if it.stage != stage:
                    continue
                context = [(items[j].question, preds[j]) for j in earlier_in_image(items, by_image[it.img_id], stage)
                           ] if mode == "context" else []
                prompt = render_prompt(it.question, answerer.prompt_candidates, prompt_params)
                groups[adapter_of_stage[stage]].append((i, it, context_prompt(prompt, context, eval_params)))
            for name, jobs in groups.items():
                model, images = answerer.models.use(name)
                _answer_group(answerer, model, images, jobs, eval_params, prompt_params.system, preds, bar)
    return [preds[i] for i in range(len(items))]
