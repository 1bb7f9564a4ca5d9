"""DVC stage `evaluate@<approach>`: answer the test split with one approach's adapters and score it honestly.

Writes, under reports/eval/<approach>/: predictions.jsonl (one row per item and mode: question, stage, type,
prediction, answer, strict and lenient correctness, the majority answer and its correctness), report.json (the
full breakdown), metrics.json (the DVC metrics), per_stage.csv and accuracy.png (the DVC plots); the curriculum
adds its forgetting matrix. The same metrics and chart go to an MLflow run `evaluate-<approach>`. Every metric
name starts with its mode (`context_strict_overall`, `independent_strict_stage_1`), in the reports, DVC and MLflow.

Started as several processes (`torchrun --nproc_per_node N -m surgvqa.evaluate.evaluate ...`), each answers a
share of the images and only the main process writes the reports and the MLflow run: the same files and run as
one process's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from surgvqa import distributed, entry
from surgvqa.data.questions import canonical_question, question_type
from surgvqa.data.raw import RAW_DIR
from surgvqa.errors import SurgvqaError
from surgvqa.evaluate.match import lenient_match, strict_match
from surgvqa.evaluate.metrics import majority_answers, summarise
from surgvqa.evaluate.stats import accuracy
from surgvqa.io import read_jsonl, replace_folder, write_json, write_jsonl
from surgvqa.model.lineage import ADAPTER_WEIGHTS, adapter_dir, check_adapter_files
from surgvqa.names import APPROACHES, STAGE_IDS
from surgvqa.params.categorize import CategorizeParams
from surgvqa.params.evaluate import EvalParams
from surgvqa.params.model import ModelParams
from surgvqa.params.prompt import PromptParams
from surgvqa.params.tracking import TrackingParams


def approach_adapters(approach: str, models_dir: Path) -> tuple[dict[str, Path], dict[int, str]]:
    """The adapters an approach loads (by name) and which of them answers each stage's questions."""
    if approach == "baseline":
        return {"baseline": adapter_dir(models_dir, "baseline", None)}, {s: "baseline" for s in STAGE_IDS}
    if approach not in APPROACHES:
        raise SurgvqaError(f"unknown approach {approach!r}: choose one of {', '.join(APPROACHES)}")
    names = {f"{approach}_{s}": adapter_dir(models_dir, approach, s) for s in STAGE_IDS}
    # Curriculum: the final adapter answers everything; the earlier ones are loaded for the forgetting matrix.
    final = f"{approach}_{STAGE_IDS[-1]}"
    route = {s: f"{approach}_{s}" if approach == "sequential" else final for s in STAGE_IDS}
    return names, route


def score_rows(items, predictions: list[str], answers: list[str], majority: dict[str, str], mode: str,
               adapter_of_stage: dict[int, str], eval_params: EvalParams) -> list[dict]:
    """One scored row per item: strict and lenient correctness, and the majority answer's on the same item."""
    rows = []
    for it, pred, gold in zip(items, predictions, answers, strict=True):
        maj = majority.get(canonical_question(it.question), "")
        rows.append({"img_id": it.img_id, "question": it.question, "qtype": question_type(it.question),
                     "stage": it.stage, "mode": mode, "adapter": adapter_of_stage[it.stage], "prediction": pred,
                     "answer": gold, "strict": strict_match(pred, gold, eval_params.numeric_tolerance),
                     "lenient": lenient_match(pred, gold, eval_params.lenient_threshold, eval_params.numeric_tolerance),
                     "majority_answer": maj, "majority": strict_match(maj, gold, eval_params.numeric_tolerance)})
    return rows


def candidate_ceiling(items, answers: list[str], choices: dict[str, list[str]], eval_params: EvalParams
                      ) -> float | None:
    """The share of items a constrained decoder can get right at all: open questions count as reachable, a
    closed-set one only when some training answer strictly matches its gold answer. None for free decoding."""
    if eval_params.decoding == "free":
        return None
    tolerance = eval_params.numeric_tolerance
    reachable = [any(strict_match(c, gold, tolerance) for c in choices[canonical_question(it.question)])
                 if canonical_question(it.question) in choices else True for it, gold in zip(items, answers)]
    return sum(reachable) / len(reachable)


def forgetting_matrix(rows_after: dict[int, list[dict]]) -> dict[str, dict[str, float | None]]:
    """Strict accuracy on each stage's items (columns) after training stage k (rows)."""
    return {f"after_stage_{k}": {f"stage_{s}": accuracy([r["strict"] for r in rows if r["stage"] == s])
                                 for s in STAGE_IDS} for k, rows in rows_after.items()}


def flat_metrics(summary: dict, mode: str) -> dict[str, float | None]:
    """The headline numbers of one mode's summary as flat metric names that start with the mode (the same names
    for every approach)."""
    prefix = f"{mode}_"
    out = {}
    for kind in ("strict", "lenient", "majority"):
        out[f"{prefix}{kind}_overall"] = summary["overall"][kind]
        out |= {f"{prefix}{kind}_stage_{s}": v[kind] for s, v in summary["stage"].items()}
        out |= {f"{prefix}{kind}_{t}": v[kind] for t, v in summary["qtype"].items()}
    lo, hi = summary["overall"]["strict_ci"] or (None, None)
    return out | {f"{prefix}strict_overall_ci_low": lo, f"{prefix}strict_overall_ci_high": hi}


def load_test_items(splits_dir: Path, raw_dir: Path, stage_table: dict[str, int], categorize: CategorizeParams):
    """(training rows, test items routed by the categorizer's table, gold answers) of the split folder."""
    from surgvqa.infer.engine import Item
    from surgvqa.infer.routing import route
    from surgvqa.model.sft import image_of

    train_rows, test_rows = read_jsonl(splits_dir / "train.jsonl"), read_jsonl(splits_dir / "test.jsonl")
    if not test_rows:
        raise SurgvqaError(f"{splits_dir / 'test.jsonl'} has no rows: check split.test in params.yaml")
    stage_of = route([r["question"] for r in test_rows], stage_table, categorize)
    items = [Item(r["img_id"], image_of(raw_dir, r["img_id"]), r["question"], stage_of[r["question"]])
             for r in test_rows]
    return train_rows, items, [r["answer"] for r in test_rows]


def run(approach: str, models_dir: Path, splits_dir: Path, raw_dir: Path, stage_table: Path, out_dir: Path,
        model: ModelParams, prompt: PromptParams, categorize: CategorizeParams, evaluate: EvalParams,
        tracking: TrackingParams) -> dict | None:
    """The stage: answer the test split in every configured mode, score it, write the reports and the MLflow run.
    Started as several processes, the others help answer and return None: the main one writes and returns."""
    from surgvqa import tracking as mlflow_tracking
    from surgvqa.evaluate.plots import stage_bars
    from surgvqa.infer.engine import AdapterModels, answer_items, make_answerer
    from surgvqa.infer.generate import load_adapters
    from surgvqa.infer.routing import read_stage_table
    from surgvqa.model.lineage import read_lineage, sha256_file
    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.prompts import answer_choices, candidate_sets

    if distributed.is_main():  # before the work: a tracking server that is down fails in seconds
        mlflow_tracking.check_server(tracking)
    dirs, adapter_of_stage = approach_adapters(approach, models_dir)
    missing = [str(d) for d in dirs.values() if not (d / ADAPTER_WEIGHTS).is_file()]
    if missing:
        raise SurgvqaError(f"adapters missing: {', '.join(missing)}; train them first (dvc repro), or fetch them "
                           "with `dvc pull` when they were trained elsewhere")
    for d in dirs.values():
        check_adapter_files(d)  # readable, and the bytes its training wrote: an error names the file and the fix
    train_rows, items, answers = load_test_items(splits_dir, raw_dir, read_stage_table(stage_table), categorize)

    base_model, processor = load_base(base_record(models_dir / "base"), model)
    peft_model = load_adapters(base_model, dirs)
    choices = answer_choices(train_rows)
    answerer = make_answerer(AdapterModels(peft_model), processor, choices, candidate_sets(train_rows))
    majority = majority_answers(train_rows)

    scored: dict[str, list[dict]] = {}
    for mode in evaluate.modes:
        preds = answer_items(answerer, items, adapter_of_stage, mode, evaluate, prompt, desc=f"{approach} {mode}")
        scored[mode] = score_rows(items, preds, answers, majority, mode, adapter_of_stage, evaluate)
    if approach == "curriculum":
        after = {}
        for k in STAGE_IDS:
            only_k = {s: f"curriculum_{k}" for s in STAGE_IDS}
            if k == STAGE_IDS[-1] and "independent" in scored:  # the final adapter's own independent answers
                after[k] = scored["independent"]
                continue
            preds = answer_items(answerer, items, only_k, "independent", evaluate, prompt, desc=f"after stage {k}")
            after[k] = score_rows(items, preds, answers, majority, "independent", only_k, evaluate)
    if not distributed.is_main():  # its answers are in the main process's predictions
        return None
    # What was answered, so a later comparison (merge fidelity) can refuse predictions of other adapters or data.
    report = {"approach": approach, "decoding": evaluate.decoding, "primary_mode": evaluate.modes[0],
              "items": len(items), "confidence": evaluate.confidence,
              "adapter_sha256": {name: sha256_file(d / ADAPTER_WEIGHTS) for name, d in dirs.items()},
              "test_sha256": sha256_file(splits_dir / "test.jsonl"),
              "candidate_ceiling": candidate_ceiling(items, answers, choices, evaluate),
              "modes": {m: summarise(rows, evaluate) for m, rows in scored.items()}}
    if approach == "curriculum":
        report["forgetting"] = forgetting_matrix(after)

    # Everything is written into a sibling folder that then replaces out_dir: a kill leaves the old reports or
    # none, never a mix of old and new files.
    final_dir, out_dir = out_dir, out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    write_jsonl(out_dir / "predictions.jsonl", [r for rows in scored.values() for r in rows])
    write_json(out_dir / "report.json", report)
    metrics = {}
    for mode, summary in report["modes"].items():
        metrics |= flat_metrics(summary, mode)
    write_json(out_dir / "metrics.json", {"approach": approach, "primary_mode": evaluate.modes[0], **metrics})
    first = next(iter(report["modes"].values()))
    plot_rows = [{"stage": s, **{f"{k}_{m}": summary["stage"][s][k] for m, summary in report["modes"].items()
                                 for k in ("strict", "lenient")},
                  "majority": first["stage"][s]["majority"]} for s in first["stage"]]
    _write_csv(out_dir / "per_stage.csv", plot_rows)
    stage_bars(report["modes"], f"{approach}: accuracy per stage (test split)", out_dir / "accuracy.png")
    replace_folder(final_dir, out_dir)
    log_evaluation(approach, {n: read_lineage(d) for n, d in dirs.items()}, report, metrics, final_dir, evaluate,
                   tracking, {"model": model, "prompt": prompt, "categorize": categorize, "evaluate": evaluate})
    return report


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def log_evaluation(approach: str, lineage: dict[str, dict], report: dict, metrics: dict, out_dir: Path,
                   evaluate: EvalParams, tracking: TrackingParams, params: dict) -> str:
    """The MLflow run `evaluate-<approach>` of the reports in out_dir, linked to the training runs of the adapters
    (`lineage`: name -> lineage record) and found again by `compare` through report.json's sha256. Returns its id.
    The chart sits at the top of the run's artifacts, where MLflow's Compare page shows it beside the others'."""
    from surgvqa import tracking as mlflow_tracking
    from surgvqa.model.lineage import sha256_file

    # Each adapter leads to its training run through the weight hash (the lineage holds no run id).
    runs = {n: mlflow_tracking.find_adapter_run(tracking, rec) for n, rec in lineage.items()}
    tags = {"approach": approach, "decoding": evaluate.decoding, "report_sha256": sha256_file(out_dir / "report.json"),
            "primary_mode": evaluate.modes[0], "base_model": next(iter(lineage.values()))["base"]["name"],
            **{f"adapter_sha256.{n}": rec["adapter_sha256"] for n, rec in lineage.items()},
            **{f"adapter_run.{n}": run or f"not found in {tracking.resolved_uri()}" for n, run in runs.items()}}
    primary = f"{evaluate.modes[0]}_strict_overall"
    description = (f"Evaluation of the {approach} approach on the test split ({report['items']} items, "
                   f"{evaluate.decoding} decoding, modes {', '.join(evaluate.modes)}): {primary} "
                   f"{metrics.get(primary, float('nan')):.3f}. Adapters: "
                   + ", ".join(f"`{n}` (training run {run or 'not in this store'})" for n, run in runs.items()) + ".")
    with mlflow_tracking.start_run(tracking, f"evaluate-{approach}", tags, kind="evaluation", params=params,
                                   description=description) as run:
        mlflow_tracking.log_params({"evaluate": vars(evaluate), "items": report["items"]})
        mlflow_tracking.log_metrics(metrics)
        if "forgetting" in report:
            mlflow_tracking.log_metrics({f"independent_forgetting.{row}.{col}": v
                                         for row, cols in report["forgetting"].items() for col, v in cols.items()})
        for name in ("report.json", "metrics.json", "per_stage.csv", "predictions.jsonl"):
            mlflow_tracking.log_file(out_dir / name, "evaluation")
        mlflow_tracking.log_file(out_dir / "accuracy.png", None)
    return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.evaluate.evaluate` (dvc.yaml) and `surgvqa evaluate`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--approach", required=True, choices=APPROACHES)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--splits", type=Path, default=Path("data/split"))
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help=f"raw layout (default: {RAW_DIR})")
    parser.add_argument("--stage-table", type=Path, default=Path("data/categorized/question_stages.csv"))
    parser.add_argument("--out", type=Path, default=Path("reports/eval"), help="the report folder goes under it")
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, approach=args.approach, models_dir=args.models,
                      splits_dir=args.splits, raw_dir=args.raw, stage_table=args.stage_table,
                      out_dir=args.out / args.approach)


def _summary(report: dict) -> None:
    for mode, summary in report["modes"].items():
        overall = summary["overall"]
        lo, hi = overall["strict_ci"]
        print(f"{report['approach']} ({mode} mode): strict {overall['strict']:.3f} [{lo:.3f}, {hi:.3f}], lenient "
              f"{overall['lenient']:.3f}, majority answer {overall['majority']:.3f} on {overall['n']} items")


if __name__ == "__main__":
    raise SystemExit(main())
