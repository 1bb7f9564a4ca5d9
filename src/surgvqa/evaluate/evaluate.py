"""DVC stage `evaluate@<approach>`: answer the test split with one approach's adapters and score it honestly.

Writes, under reports/eval/<approach>/: predictions.jsonl (one row per item and mode: question, stage, type,
prediction, answer, strict and lenient correctness, the majority answer and its correctness), report.json (the
full breakdown), metrics.json (the DVC metrics), per_stage.csv and accuracy.png (the DVC plots); the curriculum
adds its forgetting matrix. The same metrics and chart go to an MLflow run `evaluate-<approach>`.
"""

from __future__ import annotations

from pathlib import Path

from surgvqa.data.questions import canonical_question, question_type
from surgvqa.errors import SurgvqaError
from surgvqa.evaluate.match import lenient_match, strict_match
from surgvqa.evaluate.metrics import majority_answers, summarise
from surgvqa.evaluate.stats import accuracy
from surgvqa.io import read_jsonl, write_json, write_jsonl
from surgvqa.params import EvalParams, Params
from surgvqa.train.approaches import APPROACHES, STAGES, adapter_dir

PRIMARY = "strict"


def approach_adapters(approach: str, models_dir: Path) -> tuple[dict[str, Path], dict[int, str]]:
    """The adapters an approach loads (by name) and which of them answers each stage's questions."""
    if approach == "baseline":
        return {"baseline": adapter_dir(models_dir, "baseline", None)}, {s: "baseline" for s in STAGES}
    if approach not in APPROACHES:
        raise SurgvqaError(f"unknown approach {approach!r}: choose one of {', '.join(APPROACHES)}")
    names = {f"{approach}_{s}": adapter_dir(models_dir, approach, s) for s in STAGES}
    # Curriculum: the final adapter answers everything; the earlier ones are loaded for the forgetting matrix.
    final = f"{approach}_{STAGES[-1]}"
    route = {s: f"{approach}_{s}" for s in STAGES} if approach == "sequential" else {s: final for s in STAGES}
    return names, route


def score_rows(items, predictions: list[str], answers: list[str], majority: dict[str, str], mode: str,
               adapter_of_stage: dict[int, str], params: EvalParams) -> list[dict]:
    """One scored row per item: strict and lenient correctness, and the majority answer's on the same item."""
    rows = []
    for it, pred, gold in zip(items, predictions, answers, strict=True):
        maj = majority.get(canonical_question(it.question), "")
        rows.append({"img_id": it.img_id, "question": it.question, "qtype": question_type(it.question),
                     "stage": it.stage, "mode": mode, "adapter": adapter_of_stage[it.stage], "prediction": pred,
                     "answer": gold, "strict": strict_match(pred, gold, params.numeric_tolerance),
                     "lenient": lenient_match(pred, gold, params.lenient_threshold, params.numeric_tolerance),
                     "majority_answer": maj, "majority": strict_match(maj, gold, params.numeric_tolerance)})
    return rows


def candidate_ceiling(items, answers: list[str], choices: dict[str, list[str]], params: EvalParams) -> float | None:
    """The share of items a constrained decoder can get right at all: open questions count as reachable, a
    closed-set one only when some training answer strictly matches its gold answer. None for free decoding."""
    if params.decoding == "free":
        return None
    reachable = [any(strict_match(c, gold, params.numeric_tolerance) for c in choices[canonical_question(it.question)])
                 if canonical_question(it.question) in choices else True for it, gold in zip(items, answers)]
    return sum(reachable) / len(reachable)


def forgetting_matrix(rows_after: dict[int, list[dict]]) -> dict[str, dict[str, float | None]]:
    """Strict accuracy on each stage's items (columns) after training stage k (rows)."""
    return {f"after_stage_{k}": {f"stage_{s}": accuracy([r["strict"] for r in rows if r["stage"] == s])
                                 for s in STAGES} for k, rows in rows_after.items()}


def flat_metrics(summary: dict, prefix: str = "") -> dict[str, float]:
    """The headline numbers of a summary as flat metric names (the same names for every approach)."""
    out = {}
    for kind in ("strict", "lenient", "majority"):
        out[f"{prefix}{kind}_overall"] = summary["overall"][kind]
        out |= {f"{prefix}{kind}_stage_{s}": v[kind] for s, v in summary["stage"].items()}
        out |= {f"{prefix}{kind}_{t}": v[kind] for t, v in summary["qtype"].items()}
    lo, hi = summary["overall"]["strict_ci"] or (None, None)
    return out | {f"{prefix}strict_overall_ci_low": lo, f"{prefix}strict_overall_ci_high": hi}


def run(approach: str, models_dir: Path, splits_dir: Path, raw_dir: Path, stage_table: Path, out_dir: Path,
        params: Params) -> dict:
    """Answer the test split in every configured mode, score it, and write the reports and the MLflow run."""
    from surgvqa.evaluate.plots import stage_bars
    from surgvqa.infer.constrained import answer_choices, build_tries
    from surgvqa.infer.engine import Answerer, Item, answer_items
    from surgvqa.infer.generate import load_adapters
    from surgvqa.infer.routing import read_stage_table, route
    from surgvqa.model.base import base_record, load_base
    from surgvqa.model.prompts import candidate_sets
    from surgvqa.model.sft import image_of

    ep = params.evaluate
    train_rows, test_rows = read_jsonl(splits_dir / "train.jsonl"), read_jsonl(splits_dir / "test.jsonl")
    dirs, adapter_of_stage = approach_adapters(approach, models_dir)
    missing = [str(d) for d in dirs.values() if not (d / "adapter_model.safetensors").is_file()]
    if missing:
        raise SurgvqaError(f"adapters missing: {', '.join(missing)}; train them first (dvc repro)")
    if not test_rows:
        raise SurgvqaError(f"{splits_dir / 'test.jsonl'} has no rows: check split.test in params.yaml")
    stage_of = route([r["question"] for r in test_rows], read_stage_table(stage_table), params.categorize)
    items = [Item(r["img_id"], image_of(raw_dir, r["img_id"]), r["question"], stage_of[r["question"]])
             for r in test_rows]
    answers = [r["answer"] for r in test_rows]

    model, processor = load_base(base_record(models_dir / "base"), params.model)
    model = load_adapters(model, dirs)
    choices = answer_choices(train_rows)
    answerer = Answerer(model, processor, choices, build_tries(processor.tokenizer, choices), candidate_sets(train_rows))
    majority = majority_answers(train_rows)

    scored: dict[str, list[dict]] = {}
    for mode in ep.modes:
        preds = answer_items(answerer, items, adapter_of_stage, mode, ep, params.prompt, desc=f"{approach} {mode}")
        scored[mode] = score_rows(items, preds, answers, majority, mode, adapter_of_stage, ep)
    report = {"approach": approach, "decoding": ep.decoding, "primary_mode": ep.modes[0], "items": len(items),
              "confidence": ep.confidence, "candidate_ceiling": candidate_ceiling(items, answers, choices, ep),
              "modes": {m: summarise(rows, ep) for m, rows in scored.items()}}
    if approach == "curriculum":
        after = {}
        for k in STAGES:
            only_k = {s: f"curriculum_{k}" for s in STAGES}
            if k == 3 and "independent" in scored:
                after[k] = scored["independent"]
                continue
            preds = answer_items(answerer, items, only_k, "independent", ep, params.prompt, desc=f"after stage {k}")
            after[k] = score_rows(items, preds, answers, majority, "independent", only_k, ep)
        report["forgetting"] = forgetting_matrix(after)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "predictions.jsonl", [r for rows in scored.values() for r in rows])
    write_json(out_dir / "report.json", report)
    metrics = {}
    for i, (mode, summary) in enumerate(report["modes"].items()):
        metrics |= flat_metrics(summary, "" if i == 0 else f"{mode}_")
    write_json(out_dir / "metrics.json", {"approach": approach, "mode": ep.modes[0], **metrics})
    stages = list(next(iter(report["modes"].values()))["stage"])
    plot_rows = [{"stage": s, **{f"{k}_{m}": summary["stage"][s][k] for m, summary in report["modes"].items()
                                 for k in ("strict", "lenient")},
                  "majority": next(iter(report["modes"].values()))["stage"][s]["majority"]} for s in stages]
    _write_csv(out_dir / "per_stage.csv", plot_rows)
    stage_bars(report["modes"], f"{approach}: accuracy per stage (test split)", out_dir / "accuracy.png")
    _log_to_mlflow(approach, dirs, report, metrics, out_dir, params)
    return report


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _log_to_mlflow(approach: str, dirs: dict[str, Path], report: dict, metrics: dict, out_dir: Path,
                   params: Params) -> None:
    from surgvqa import tracking
    from surgvqa.model.lineage import read_lineage

    lineage = {n: read_lineage(d) for n, d in dirs.items()}
    tags = {"approach": approach, "kind": "evaluation", "decoding": params.evaluate.decoding,
            "base_model": next(iter(lineage.values()))["base"]["name"],
            **{f"adapter_run.{n}": rec["mlflow_run_id"] for n, rec in lineage.items()}}
    with tracking.start_run(params.tracking, f"evaluate-{approach}", tags):
        tracking.log_params({"evaluate": vars(params.evaluate), "items": report["items"]})
        tracking.log_metrics(metrics)
        if "forgetting" in report:
            tracking.log_metrics({f"forgetting.{row}.{col}": v for row, cols in report["forgetting"].items()
                                  for col, v in cols.items() if v is not None})
        for name in ("report.json", "metrics.json", "per_stage.csv", "accuracy.png", "predictions.jsonl"):
            tracking.log_file(out_dir / name, "evaluation")
