"""Do the trained adapters answer the test split better than always giving each question's most common
training answer? Strict exact match, per approach and per stage, beside that majority baseline on the same items.

Every adapter answers every test item (one base model, adapters switched by name), so the report also shows
how each adapter does outside the stage it was trained on.
Sequential routes each item to the specialist of the stage the categorizer gave its question.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.evaluate.match import strict_match
from surgvqa.io import read_jsonl, write_json
from surgvqa.model.prompts import candidate_sets
from surgvqa.params import Params
from surgvqa.train.approaches import STAGES, adapter_dir
from surgvqa.train.stage import stage_examples


def majority_answers(train_rows: list[dict]) -> dict[str, str]:
    """Each question's most common training answer (ties: the alphabetically first, so the result is stable)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in train_rows:
        counts[r["question"]][r["answer"]] += 1
    return {q: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for q, c in counts.items()}


def accuracy(correct: list[bool]) -> float | None:
    return round(sum(correct) / len(correct), 4) if correct else None


def _by_stage(rows: list[dict], correct: list[bool]) -> dict:
    out = {"overall": accuracy(correct), "items": len(correct)}
    for s in STAGES:
        out[f"stage_{s}"] = accuracy([c for r, c in zip(rows, correct) if r["stage_id"] == s])
    return out


def run(models_dir: Path, splits_dir: Path, raw_dir: Path, base_dir: Path, report: Path, params: Params) -> dict:
    """Answer the test split with all seven adapters and write the comparison report."""
    from surgvqa.infer.generate import generate_answers, load_adapters
    from surgvqa.model.base import base_record, load_base

    train_rows, test_rows = read_jsonl(splits_dir / "train.jsonl"), read_jsonl(splits_dir / "test.jsonl")
    names = {f"sequential_{s}": ("sequential", s) for s in STAGES} | {
        f"curriculum_{s}": ("curriculum", s) for s in STAGES} | {"baseline": ("baseline", None)}
    dirs = {n: adapter_dir(models_dir, a, s) for n, (a, s) in names.items()}
    missing = [str(d) for d in dirs.values() if not (d / "adapter_model.safetensors").is_file()]
    if missing:
        raise SurgvqaError(f"adapters missing: {', '.join(missing)}; train them first (dvc repro)")
    examples = stage_examples(test_rows, STAGES, raw_dir, candidate_sets(train_rows), params)
    rows = [r for r in test_rows if r["stage_id"] in STAGES]
    base, processor = load_base(base_record(base_dir), params.model)
    model = load_adapters(base, dirs)
    predictions = {n: generate_answers(model, processor, examples, n, system=params.prompt.system, desc=n) for n in dirs}
    correct = {n: [strict_match(p, r["answer"]) for p, r in zip(preds, rows)] for n, preds in predictions.items()}

    majority = majority_answers(train_rows)
    majority_correct = [strict_match(majority.get(r["question"], ""), r["answer"]) for r in rows]
    routed = [correct[f"sequential_{r['stage_id']}"][i] for i, r in enumerate(rows)]
    result = {
        "metric": "strict exact match (values compared as sets) on the test split",
        "majority_baseline": _by_stage(rows, majority_correct),
        "approaches": {"sequential": _by_stage(rows, routed), "curriculum": _by_stage(rows, correct["curriculum_3"]),
                       "baseline": _by_stage(rows, correct["baseline"])},
        "adapters": {n: _by_stage(rows, c) for n, c in correct.items()},
    }
    result["beats_majority"] = {a: v["overall"] > result["majority_baseline"]["overall"]
                                for a, v in result["approaches"].items()}
    write_json(report, result)
    return result
