"""DVC stage `compare`: the three approaches side by side, strict first, with intervals and paired tests.

Reads every approach's predictions and report from reports/eval/ and writes reports/compare.md (tables),
reports/compare.json (DVC metrics), and PNG charts (accuracy per stage; the curriculum's forgetting matrix).
Paired comparisons use the same items in the same mode: wins, ties, losses and an exact McNemar p-value.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from surgvqa import entry
from surgvqa.errors import SurgvqaError
from surgvqa.evaluate.stats import holm, paired
from surgvqa.io import read_json, read_jsonl, write_json, write_text
from surgvqa.names import APPROACHES, STAGE_IDS
from surgvqa.params.evaluate import EvalParams
from surgvqa.params.tracking import TrackingParams


def _correct(rows: list[dict], mode: str, key: str = "strict") -> dict[tuple[str, str], bool]:
    return {(r["img_id"], r["question"]): r[key] for r in rows if r["mode"] == mode}


def paired_result(a: dict[tuple, bool], b: dict[tuple, bool]) -> dict:
    """A against B on their shared items; refuses item sets that differ (it would not be a paired test)."""
    if a.keys() != b.keys():
        raise SurgvqaError(f"paired comparison needs the same items: {len(a.keys() ^ b.keys())} differ; rerun "
                           "the evaluate stages on the same test split")
    keys = sorted(a)
    p = paired([a[k] for k in keys], [b[k] for k in keys])
    return {"wins": p.wins, "ties": p.ties, "ties_both_right": p.ties_both_right,
            "ties_both_wrong": p.ties_both_wrong, "losses": p.losses, "p_value": p.p_value}


def compare(reports: dict[str, dict], predictions: dict[str, list[dict]], confidence: float) -> dict:
    """The comparison: headline numbers per approach (primary mode), paired tests between approaches and
    against the majority answer (in every mode all approaches share), and context passing against
    independent answering (each approach). Every report's intervals must be at `confidence` (evaluate.confidence)."""
    stale = {a: r.get("confidence") for a, r in reports.items() if r.get("confidence") != confidence}
    if stale:
        raise SurgvqaError(f"evaluation reports {stale} were computed at another confidence than evaluate.confidence "
                           f"{confidence}: rerun the evaluate stages (dvc repro)")
    modes = {r["primary_mode"] for r in reports.values()}
    if len(modes) != 1:
        raise SurgvqaError(f"approaches were evaluated with different primary modes {sorted(modes)}: "
                           "use one evaluate.modes for all")
    mode = modes.pop()
    shared = sorted((m for m in next(iter(reports.values()))["modes"]
                     if all(m in r["modes"] for r in reports.values())),
                    key=lambda m: m != mode)  # the primary mode first
    out = {"mode": mode, "approaches": {}, "paired": {m: {} for m in shared}, "context_vs_independent": {}}
    for a, rep in reports.items():
        s = rep["modes"][mode]
        out["approaches"][a] = {"overall": s["overall"], "stage": s["stage"], "qtype": s["qtype"]}
        if {"context", "independent"} <= set(rep["modes"]):
            out["context_vs_independent"][a] = paired_result(_correct(predictions[a], "context"),
                                                             _correct(predictions[a], "independent"))
    for m in shared:
        for a in reports:
            out["paired"][m][f"{a} vs majority answer"] = paired_result(_correct(predictions[a], m),
                                                                        _correct(predictions[a], m, "majority"))
        for a, b in combinations(reports, 2):
            out["paired"][m][f"{a} vs {b}"] = paired_result(_correct(predictions[a], m), _correct(predictions[b], m))
        # Many tests on one test set: Holm's adjustment keeps the family-wise error at the nominal level.
        for v, adjusted in zip(out["paired"][m].values(), holm([v["p_value"] for v in out["paired"][m].values()])):
            v["p_holm"] = adjusted
    out["ceiling"] = {a: rep.get("candidate_ceiling") for a, rep in reports.items()}
    out["confidence"] = confidence
    if "curriculum" in reports and "forgetting" in reports["curriculum"]:
        out["forgetting"] = reports["curriculum"]["forgetting"]
    return out


def _cell(group: dict | None, key: str = "strict") -> str:
    if not group or group[key] is None:
        return "n/a"
    ci = group.get("strict_ci") if key == "strict" else None
    return f"{group[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(result: dict, reports: dict[str, dict]) -> str:
    """The comparison as markdown tables."""
    mode = result["mode"]
    lines = [f"# Approaches compared on the test split ({mode} mode)", "",
             f"Strict accuracy (normalised exact match, values as sets) with {result['confidence']:.0%} bootstrap "
             "intervals (whole images resampled); the lenient figure (substring or similarity >= threshold, as in "
             "published numbers) only beside it. Constrained answers come from the training answers, so at most "
             + ", ".join(f"{a} {c:.3f}" for a, c in result["ceiling"].items() if c is not None)
             + " of the items can be answered right (the ceiling).", "",
             "| approach | overall | " + " | ".join(f"stage {s}" for s in STAGE_IDS) + " | items |",
             "|---|---|" + "---|" * len(STAGE_IDS) + "---|"]
    first = next(iter(result["approaches"].values()))
    lines.append("| majority answer per question | " + _cell(first["overall"], "majority") + " | "
                 + " | ".join(_cell(first["stage"].get(str(s)), "majority") for s in STAGE_IDS) + " | "
                 + str(first["overall"]["n"]) + " |")
    for a, s in result["approaches"].items():
        lines.append(f"| {a} | {_cell(s['overall'])} | "
                     + " | ".join(_cell(s["stage"].get(str(st))) for st in STAGE_IDS) + f" | {s['overall']['n']} |")
    lines += ["", "Lenient accuracy, for comparison with published numbers only (it counts \"no\" for "
              "\"not relevant\" and near-miss strings as right):", "",
              "| approach | overall | " + " | ".join(f"stage {s}" for s in STAGE_IDS) + " |",
              "|---|---|" + "---|" * len(STAGE_IDS)]
    lines += [f"| {a} | {_cell(s['overall'], 'lenient')} | "
              + " | ".join(_cell(s["stage"].get(str(st)), "lenient") for st in STAGE_IDS) + " |"
              for a, s in result["approaches"].items()]
    for m, pairs in result["paired"].items():
        lines += ["", f"## Paired comparisons, {m} mode (same items, strict)", "",
                  "Exact McNemar p, and Holm-adjusted over the tests of this table. The test treats items as "
                  "independent; questions about one image are not, so read small p-values with care.", "",
                  "| A vs B | A wins | ties | B wins | exact McNemar p | Holm p |", "|---|---|---|---|---|---|"]
        lines += [f"| {k} | {v['wins']} | {v['ties']} | {v['losses']} | {v['p_value']:.4g} | {v['p_holm']:.4g} |"
                  for k, v in pairs.items()]
    if result["context_vs_independent"]:
        lines += ["", "## Context passing (context mode) against independent answering", "",
                  "| approach | strict with context | strict independent | context wins | ties | context loses | p |",
                  "|---|---|---|---|---|---|---|"]
        for a, v in result["context_vs_independent"].items():
            m = reports[a]["modes"]
            lines.append(f"| {a} | {_cell(m['context']['overall'])} | {_cell(m['independent']['overall'])} | "
                         f"{v['wins']} | {v['ties']} | {v['losses']} | {v['p_value']:.4g} |")
    if "forgetting" in result:
        cols = list(next(iter(result["forgetting"].values())))
        lines += ["", "## Curriculum forgetting (strict accuracy on each stage's items, independent mode)", "",
                  "| after | " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|---|" + "---|" * len(cols)]
        lines += [f"| {r.replace('_', ' ')} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in row.values())
                  + " |" for r, row in result["forgetting"].items()]
    return "\n".join(lines) + "\n"


def flat_metrics(result: dict) -> dict[str, float]:
    """compare.json: the headline numbers per approach (their names start with the mode) and the paired
    p-values, flat."""
    mode, out = result["mode"], {}
    for a, s in result["approaches"].items():
        out[f"{a}.{mode}_strict_overall"] = s["overall"]["strict"]
        out[f"{a}.{mode}_lenient_overall"] = s["overall"]["lenient"]
        out |= {f"{a}.{mode}_strict_stage_{st}": v["strict"] for st, v in s["stage"].items()}
    out[f"majority.{mode}_strict_overall"] = next(iter(result["approaches"].values()))["overall"]["majority"]
    out |= {f"paired.{m}.{k.replace(' ', '_')}.p_value": v["p_value"]
            for m, pairs in result["paired"].items() for k, v in pairs.items()}
    return out


def run(eval_dir: Path, out_md: Path, out_json: Path, charts_dir: Path, evaluate: EvalParams,
        tracking: TrackingParams) -> dict:
    """The stage: compare every approach's evaluation and write the table, metrics and charts."""
    from surgvqa import tracking as mlflow_tracking
    from surgvqa.evaluate.plots import forgetting_heatmap, stage_bars

    mlflow_tracking.check_server(tracking)  # before the work: a tracking server that is down fails in seconds
    missing = [a for a in APPROACHES if not (eval_dir / a / "report.json").is_file()]
    if missing:
        raise SurgvqaError(f"no evaluation for {', '.join(missing)}: run `dvc repro` (evaluate@<approach>) first")
    reports = {a: read_json(eval_dir / a / "report.json") for a in APPROACHES}
    predictions = {a: read_jsonl(eval_dir / a / "predictions.jsonl") for a in APPROACHES}
    result = compare(reports, predictions, evaluate.confidence)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_md, markdown(result, reports))
    metrics = flat_metrics(result)
    write_json(out_json, metrics)
    charts_dir.mkdir(parents=True, exist_ok=True)
    charts = [charts_dir / "accuracy_by_stage.png"]
    stage_bars(result["approaches"], f"approaches: strict accuracy per stage ({result['mode']} mode)", charts[0])
    if "forgetting" in result:
        charts.append(charts_dir / "forgetting.png")
        forgetting_heatmap(result["forgetting"], charts[1])
    log_comparison(eval_dir, metrics, [out_md, out_json], charts, result, evaluate, tracking)
    return result


def log_comparison(eval_dir: Path, metrics: dict, reports: list[Path], charts: list[Path], result: dict,
                   evaluate: EvalParams, tracking: TrackingParams) -> str:
    """The MLflow run `compare`, linked to the evaluation runs it compares (found by the sha256 of each
    report.json it read: tags `compared_run.<approach>`, and links in its description). The charts sit at the top
    of its artifacts, where MLflow's Compare page shows them. Returns its id."""
    from surgvqa import tracking as mlflow_tracking
    from surgvqa.model.lineage import sha256_file

    found = {a: mlflow_tracking.find_evaluation_run(tracking, a, sha256_file(eval_dir / a / "report.json"))
             for a in APPROACHES}
    tags = {f"compared_run.{a}": run.info.run_id if run else f"not found in {tracking.resolved_uri()}"
            for a, run in found.items()}
    links = ", ".join(f"[evaluate-{a}](#/experiments/{run.info.experiment_id}/runs/{run.info.run_id})" if run
                      else f"evaluate-{a} (not in this store)" for a, run in found.items())
    strict = ", ".join(f"{a} {s['overall']['strict']:.3f}" for a, s in result["approaches"].items())
    description = (f"Comparison of the three approaches on the test split ({result['mode']} mode), strict "
                   f"accuracy: {strict}; paired exact McNemar tests with Holm adjustment in compare.md. "
                   f"Compares the evaluation runs {links}.")
    with mlflow_tracking.start_run(tracking, "compare", tags, kind="comparison", params={"evaluate": evaluate},
                                   description=description) as run:
        mlflow_tracking.log_metrics({k.replace(" ", "_"): v for k, v in metrics.items()})
        for path in reports:
            mlflow_tracking.log_file(path, "comparison")
        for path in charts:
            mlflow_tracking.log_file(path, None)
    return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.evaluate.compare` (dvc.yaml) and `surgvqa compare`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--eval", type=Path, default=Path("reports/eval"))
    parser.add_argument("--out", type=Path, default=Path("reports/compare.md"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/compare.json"))
    parser.add_argument("--charts", type=Path, default=Path("reports/charts"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, eval_dir=args.eval, out_md=args.out, out_json=args.metrics,
                      charts_dir=args.charts)


def _summary(result: dict) -> None:
    print(f"compare ({result['mode']} mode), strict: " + ", ".join(
        f"{a} {s['overall']['strict']:.3f}" for a, s in result["approaches"].items()))


if __name__ == "__main__":
    raise SystemExit(main())
