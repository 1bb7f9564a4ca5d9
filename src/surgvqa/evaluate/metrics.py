"""Metrics over scored predictions: strict first, lenient beside it, the majority answer on the same items,
bootstrap intervals over images, and label precision/recall/F1 for multiple-choice questions."""

from __future__ import annotations

from collections import Counter, defaultdict

from surgvqa.data.questions import canonical_question
from surgvqa.evaluate.match import atoms
from surgvqa.evaluate.stats import accuracy, bootstrap_ci, label_prf
from surgvqa.params.evaluate import EvalParams


def majority_answers(train_rows: list[dict]) -> dict[str, str]:
    """Each question's most common training answer (ties: the alphabetically first, so the result is stable),
    keyed by catalogue text."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in train_rows:
        counts[canonical_question(r["question"])][r["answer"]] += 1
    return {q: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for q, c in counts.items()}


def _group(rows: list[dict], eval_params: EvalParams) -> dict:
    strict = [r["strict"] for r in rows]
    ci = bootstrap_ci(strict, eval_params.bootstrap_samples, eval_params.seed, eval_params.confidence,
                      clusters=[r["img_id"] for r in rows])
    return {"n": len(rows), "strict": accuracy(strict), "strict_ci": list(ci) if ci else None,
            "lenient": accuracy([r["lenient"] for r in rows]), "majority": accuracy([r["majority"] for r in rows])}


def _by(rows: list[dict], key: str, eval_params: EvalParams) -> dict:
    groups: dict = defaultdict(list)
    for r in rows:
        groups[canonical_question(r[key]) if key == "question" else str(r[key])].append(r)
    return {k: _group(v, eval_params) for k, v in sorted(groups.items())}


def _prf(rows: list[dict]) -> dict:
    return label_prf([set(atoms(r["prediction"])) for r in rows], [set(atoms(r["answer"])) for r in rows]) | {
        "n": len(rows)}


def summarise(rows: list[dict], eval_params: EvalParams) -> dict:
    """Overall, per stage, per question type and per question; rows carry strict, lenient and majority flags."""
    mc = [r for r in rows if r["qtype"] == "multiple_choice"]
    by_question: dict[str, list[dict]] = defaultdict(list)
    for r in mc:
        by_question[canonical_question(r["question"])].append(r)
    return {
        "overall": _group(rows, eval_params),
        "stage": _by(rows, "stage", eval_params),
        "qtype": _by(rows, "qtype", eval_params),
        "question": _by(rows, "question", eval_params),
        "multiple_choice_labels": {"all": _prf(mc), "question": {q: _prf(v) for q, v in sorted(by_question.items())}},
    }
