"""DVC stage `gate`: may the merged candidate be promoted? One entry per check in reports/gate.json.

Threshold checks (accuracy overall and per stage, merge fidelity, test-split size) go through MLflow's own
`mlflow.validate_evaluation_results` with a `MetricThreshold`, so a failure reads as MLflow's does; the
paired check against the per-question majority answer (exact McNemar) and the provenance checks sit beside
them. It fails closed: a missing or NaN metric fails, and so does an evaluation made for another merged model
or another test split than the candidate's (stale).

The stage records a failed gate as faithfully as a passed one (the report is a result, and DVC keeps it), and
says so plainly; `surgvqa check-gate` (what `scripts/repro.sh` and CI run) and `surgvqa promote` exit non-zero
on a failed or stale gate.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from surgvqa import entry
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json, read_jsonl, write_json
from surgvqa.model.lineage import LINEAGE_FILE, sha256_file
from surgvqa.names import STAGE_IDS
from surgvqa.params.gate import GateParams
from surgvqa.release.files import EVALUATION, PREDICTIONS, check_candidate, read_manifest


def _check(name: str, passed: bool, value, threshold, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold, "detail": detail}


def threshold_check(name: str, metrics: dict, metric: str, threshold: float, greater_is_better: bool) -> dict:
    """One metric against one threshold, by MLflow's validator; a missing or non-finite value fails closed."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import EvaluationResult, MetricThreshold

    value = metrics.get(metric)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
        return _check(name, False, None, threshold, f"{metric} is {value!r}, not a finite number: fail closed")
    candidate = EvaluationResult(metrics={} if value is None else {metric: float(value)}, artifacts={})
    rule = MetricThreshold(threshold=threshold, greater_is_better=greater_is_better)
    # One INFO line per check ("Validating candidate model metrics...") would bury the gate's own table.
    logging.getLogger("mlflow.models.evaluation.validation").setLevel(logging.WARNING)
    try:
        mlflow.validate_evaluation_results({metric: rule}, candidate, None)
    except MlflowException as e:  # ModelValidationFailedException: MLflow's own wording of the failure
        return _check(name, False, value, threshold, e.message)
    return _check(name, True, value, threshold, f"{metric} = {value:.4g} {'>=' if greater_is_better else '<='} "
                  f"{threshold:g}")


def majority_check(rows: list[dict], significance: float | None) -> dict:
    """Paired against the per-question majority answer on the same items: wins must exceed losses, significantly.

    significance None (the test profile's gate, which proves the release path on a model trained two steps)
    reports the comparison without requiring it; the integrity checks still apply."""
    from surgvqa.evaluate.stats import paired

    if not rows or any(not isinstance(r.get("strict"), bool) or not isinstance(r.get("majority"), bool)
                       for r in rows):
        return _check("beats the majority answer", False, None, significance,
                      "predictions are missing or lack strict/majority correctness: fail closed")
    result = paired([r["strict"] for r in rows], [r["majority"] for r in rows])
    beats = result.wins > result.losses and (significance is None or result.p_value < significance)
    needs = ("not required: gate.significance is null" if significance is None
             else f"needs wins > losses and p < {significance:g}")
    return _check("beats the majority answer", beats or significance is None,
                  {"wins": result.wins, "ties": result.ties, "losses": result.losses, "p_value": result.p_value},
                  significance, f"wins {result.wins}, ties {result.ties}, losses {result.losses}; exact McNemar "
                  f"p = {result.p_value:.4g} ({needs})")


def provenance_checks(evaluation: dict, rows: list[dict], manifest: dict, test_sha256: str, verify: dict,
                      validation: dict, adapter_paths: list[str]) -> list[dict]:
    """The evaluation is of this candidate on this test split, complete, from verified adapters and valid data."""
    candidate = evaluation.get("candidate", {})
    distinct = len({(r.get("img_id"), r.get("question")) for r in rows})
    checks = [
        _check("evaluation is of this merged model", candidate.get("merged_sha256") == manifest["merged_sha256"],
               candidate.get("merged_sha256"), manifest["merged_sha256"],
               "stale: evaluated another merged model; rerun `dvc repro evaluate_merged`"
               if candidate.get("merged_sha256") != manifest["merged_sha256"] else "merged_sha256 matches"),
        _check("evaluation is of this test split", candidate.get("test_sha256") == test_sha256,
               candidate.get("test_sha256"), test_sha256,
               "stale: evaluated another test split; rerun `dvc repro evaluate_merged`"
               if candidate.get("test_sha256") != test_sha256 else "test_sha256 matches"),
        _check("evaluation in the release's mode", candidate.get("mode") == manifest["mode"], candidate.get("mode"),
               manifest["mode"], f"evaluated in {candidate.get('mode')!r} mode, released in {manifest['mode']!r}"),
        _check("predictions complete", len(rows) == evaluation.get("items") and bool(rows) and distinct == len(rows),
               len(rows), evaluation.get("items"), f"{len(rows)} scored predictions ({distinct} distinct items) for "
               f"{evaluation.get('items')} items"),
    ]
    statuses = {path: verify.get("checks", {}).get(path) for path in adapter_paths}
    unverified = [p for p, s in statuses.items() if not s or "FAILED" in s.values()]
    checks.append(_check("adapters verified", bool(adapter_paths) and not unverified,
                         len(adapter_paths) - len(unverified), len(adapter_paths),
                         f"not verified: {unverified}" if unverified
                         else "verify-adapter passed for every merged adapter" if adapter_paths
                         else "the manifest names no merged adapter: fail closed"))
    failed = validation.get("expectations_failed")
    checks.append(_check("data validation passed", failed == 0 and (validation.get("expectations_evaluated") or 0) > 0,
                         failed, 0, f"{failed} failed of {validation.get('expectations_evaluated')} expectations"))
    return checks


def gate_checks(evaluation: dict, rows: list[dict], manifest: dict, test_sha256: str, verify: dict,
                validation: dict, adapter_paths: list[str], gate: GateParams) -> list[dict]:
    """Every check of the gate, in report order."""
    metrics = dict(evaluation.get("metrics", {}))
    fidelity = evaluation.get("fidelity", {})
    metrics |= {"items": evaluation.get("items"), "fidelity_ties": fidelity.get("ties"),
                "fidelity_strict_drop": fidelity.get("strict_drop"),
                "fidelity_max_logit_difference": fidelity.get("max_logit_difference")}
    checks = provenance_checks(evaluation, rows, manifest, test_sha256, verify, validation, adapter_paths)
    checks.append(threshold_check("test items", metrics, "items", gate.min_items, True))
    checks.append(threshold_check("strict accuracy", metrics, "strict_overall", gate.min_strict_overall, True))
    checks += [threshold_check(f"strict accuracy, stage {s}", metrics, f"strict_stage_{s}", floor, True)
               for s, floor in zip(STAGE_IDS, gate.min_strict_stage)]
    checks.append(majority_check(rows, gate.significance))
    checks.append(threshold_check("merge fidelity: ties", metrics, "fidelity_ties", gate.min_fidelity_ties, True))
    checks.append(threshold_check("merge fidelity: strict drop", metrics, "fidelity_strict_drop",
                                  gate.max_fidelity_strict_drop, False))
    checks.append(threshold_check("merge fidelity: max logit difference", metrics, "fidelity_max_logit_difference",
                                  gate.max_logit_difference, False))
    return checks


def run(release_dir: Path, merged_dir: Path, splits_dir: Path, verify_report: Path, validation_report: Path,
        out: Path, gate: GateParams) -> dict:
    """The stage: every check on the candidate in models/merged, written to reports/gate.json (pass or fail)."""
    manifest = read_manifest(merged_dir)
    evaluation = read_json(release_dir / EVALUATION, hint="run `dvc repro evaluate_merged` first")
    rows = read_jsonl(release_dir / PREDICTIONS)
    adapter_paths = [read_json(merged_dir / name / LINEAGE_FILE)["adapter"]["path"] for name in manifest["models"]]
    test_sha256 = sha256_file(splits_dir / "test.jsonl")
    checks = gate_checks(evaluation, rows, manifest, test_sha256, read_json(verify_report),
                         read_json(validation_report), adapter_paths, gate)
    report = {"passed": all(c["passed"] for c in checks), "failed": [c["name"] for c in checks if not c["passed"]],
              "checks_passed": sum(c["passed"] for c in checks), "checks_total": len(checks),  # for `dvc metrics`
              "candidate": {"approach": manifest["approach"], "mode": manifest["mode"],
                            "merged_sha256": manifest["merged_sha256"], "test_sha256": test_sha256},
              "checks": checks}
    write_json(out, report)
    return report


def fresh_report(gate_path: Path, merged_dir: Path, test_file: Path) -> tuple[dict, dict]:
    """(the recorded gate report, the manifest), refused unless the report gated the candidate on disk (its files
    checked against its manifest) on this test split. Passed or failed: `verdict` and `promote` decide."""
    report = read_json(gate_path, hint="run `dvc repro gate` first")
    manifest = read_manifest(merged_dir)
    check_candidate(merged_dir, manifest)  # the files on disk, not only the manifest's word for them
    candidate = report.get("candidate", {})
    if candidate.get("merged_sha256") != manifest["merged_sha256"] or candidate.get("test_sha256") != sha256_file(
            test_file):
        raise SurgvqaError(f"{gate_path} is stale: it gated another merged model or test split than the ones on "
                           "disk; run `dvc repro` to gate the current candidate")
    return report, manifest


def verdict(gate_path: Path, merged_dir: Path, test_file: Path) -> dict:
    """The recorded gate report, refused unless it is fresh (`fresh_report`) and passed."""
    report, manifest = fresh_report(gate_path, merged_dir, test_file)
    if not report.get("passed"):
        raise SurgvqaError(f"the gate FAILED for candidate {manifest['merged_sha256'][:12]}: "
                           f"{', '.join(report.get('failed', [])) or 'no check passed'} (details: {gate_path})")
    return report


def table(report: dict) -> str:
    """The gate report as aligned lines: status, check, detail."""
    width = max(len(c["name"]) for c in report["checks"])
    lines = [f"  {'ok' if c['passed'] else 'FAILED':<7} {c['name']:<{width}}  {c['detail']}" for c in report["checks"]]
    return "\n".join([*lines, f"  gate: {'PASSED' if report['passed'] else 'FAILED'}"])


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.release.gate` (dvc.yaml) and `surgvqa gate`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--release", type=Path, default=Path("reports/release"),
                        help="holds the merged candidate's evaluation.json and predictions.jsonl")
    parser.add_argument("--merged", type=Path, default=Path("models/merged"))
    parser.add_argument("--splits", type=Path, default=Path("data/split"))
    parser.add_argument("--verify-report", type=Path, default=Path("reports/verify_adapters.json"))
    parser.add_argument("--validation-report", type=Path, default=Path("reports/data_validation.json"))
    parser.add_argument("--out", type=Path, default=Path("reports/gate.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, release_dir=args.release, merged_dir=args.merged,
                      splits_dir=args.splits, verify_report=args.verify_report,
                      validation_report=args.validation_report, out=args.out)


def _summary(report: dict) -> None:
    print(f"gate for merged {report['candidate']['approach']} {report['candidate']['merged_sha256'][:12]}:")
    print(table(report))
    if not report["passed"]:
        print(f"GATE FAILED ({', '.join(report['failed'])}): this candidate cannot be promoted; "
              "`surgvqa check-gate` exits non-zero")


if __name__ == "__main__":
    raise SystemExit(main())
