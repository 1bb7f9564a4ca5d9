"""The promotion gate, without a model or an MLflow server: every check passes on a good candidate, each one fails
alone (and says why), `run` writes reports/gate.json either way, and `verdict` refuses a failed or stale gate."""

import copy
import json
import math

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json, write_json, write_jsonl
from surgvqa.model.lineage import LINEAGE_FILE, sha256_file
from surgvqa.release import gate
from surgvqa.release.files import EVALUATION, MANIFEST, PREDICTIONS, candidate_hash, sha256_folder
from tests.conftest import section

MERGED_SHA = "a" * 64
TEST_SHA = "b" * 64
ADAPTER = "models/baseline"

CHECK_NAMES = [
    "evaluation is of this merged model",
    "evaluation is of this test split",
    "evaluation in the release's mode",
    "predictions complete",
    "adapters verified",
    "data validation passed",
    "test items",
    "strict accuracy",
    "strict accuracy, stage 1",
    "strict accuracy, stage 2",
    "strict accuracy, stage 3",
    "beats the majority answer",
    "merge fidelity: ties",
    "merge fidelity: strict drop",
    "merge fidelity: max logit difference",
]


# --- helpers -----------------------------------------------------------------------------------------------------

def scored_rows(wins: int, losses: int, both_right: int, both_wrong: int) -> list[dict]:
    """Scored predictions with the given paired outcomes of the candidate (strict) against the majority answer,
    interleaved so any prefix looks like the whole."""
    kinds = [(True, False)] * wins + [(False, True)] * losses + [(True, True)] * both_right + \
        [(False, False)] * both_wrong
    stride = 7 if len(kinds) % 7 else 1  # 7 is prime: i * 7 mod n visits every index once when 7 does not divide n
    kinds = [kinds[(i * stride) % len(kinds)] for i in range(len(kinds))]
    return [{"img_id": f"img{i // 9:04d}", "question": f"question {i % 9}", "stage": i % 3 + 1,
             "mode": "independent", "strict": strict, "majority": majority}
            for i, (strict, majority) in enumerate(kinds)]


def passing_case() -> dict:
    """The keyword arguments of `gate_checks` for a candidate that clears every check (300 items)."""
    rows = scored_rows(wins=90, losses=20, both_right=80, both_wrong=110)  # strict 170/300, majority 100/300
    evaluation = {
        "candidate": {"merged_sha256": MERGED_SHA, "test_sha256": TEST_SHA, "mode": "independent",
                      "approach": "baseline", "decoding": "constrained"},
        "items": len(rows),
        "metrics": {"strict_overall": 0.567, "strict_overall_ci_low": 0.51, "strict_overall_ci_high": 0.62,
                    "lenient_overall": 0.61, "majority_overall": 0.333,
                    "strict_stage_1": 0.74, "strict_stage_2": 0.40, "strict_stage_3": 0.81},
        "fidelity": {"items": len(rows), "identical": 300, "ties": 1.0, "wins": 0, "losses": 0, "both_right": 170,
                     "both_wrong": 130, "p_value": 1.0, "merged_strict": 0.567, "unmerged_strict": 0.567,
                     "strict_drop": 0.0, "max_logit_difference": 2.0e-5},
    }
    return {
        "evaluation": evaluation,
        "rows": rows,
        "manifest": {"merged_sha256": MERGED_SHA, "mode": "independent", "approach": "baseline",
                     "models": {"model": "c" * 64}},
        "test_sha256": TEST_SHA,
        "verify": {"adapters_passed": 1, "adapters": 1,
                   "checks": {ADAPTER: {"adapter hash": "ok", "continuity": "skipped"}}},
        "validation": {"expectations_evaluated": 15, "expectations_failed": 0},
        "adapter_paths": [ADAPTER],
        "gate": section("gate"),
    }


def checks_of(case: dict) -> list[dict]:
    return gate.gate_checks(**case)


def only_failure(checks: list[dict]) -> dict:
    """The one failed check; fails the test unless exactly one failed."""
    failed = [c for c in checks if not c["passed"]]
    assert len(failed) == 1, f"expected exactly one failed check, got {[c['name'] for c in failed]}"
    return failed[0]


def by_name(checks: list[dict], name: str) -> dict:
    return next(c for c in checks if c["name"] == name)


# --- the passing case --------------------------------------------------------------------------------------------

def test_a_good_candidate_passes_every_check_in_report_order():
    checks = checks_of(passing_case())
    assert [c["name"] for c in checks] == CHECK_NAMES
    assert [c["name"] for c in checks if not c["passed"]] == []
    for c in checks:
        assert set(c) == {"name", "passed", "value", "threshold", "detail"} and c["passed"] is True
    majority = by_name(checks, "beats the majority answer")
    assert majority["value"]["wins"] == 90 and majority["value"]["losses"] == 20 and majority["value"]["ties"] == 190
    assert majority["value"]["p_value"] < 1e-9
    assert by_name(checks, "strict accuracy")["detail"] == "strict_overall = 0.567 >= 0.5"
    assert by_name(checks, "test items")["value"] == 300


def test_values_exactly_at_the_thresholds_pass():
    case = passing_case()
    g = case["gate"]
    case["evaluation"]["metrics"] |= {"strict_overall": g.min_strict_overall,
                                      **{f"strict_stage_{s}": v for s, v in zip((1, 2, 3), g.min_strict_stage)}}
    case["evaluation"]["fidelity"] |= {"ties": g.min_fidelity_ties, "strict_drop": g.max_fidelity_strict_drop,
                                       "max_logit_difference": g.max_logit_difference}
    case["rows"] = case["rows"][:g.min_items]
    case["evaluation"]["items"] = g.min_items
    assert [c["name"] for c in checks_of(case) if not c["passed"]] == []


# --- each check fails alone --------------------------------------------------------------------------------------

def _named(change, name: str):
    """A change labelled for the test id (what it does to the passing case)."""
    change.__name__ = name
    return change


def _metric(key, value):
    def change(case):
        case["evaluation"]["metrics"][key] = value
    return _named(change, f"{key}={value!r}")


def _fidelity(key, value):
    def change(case):
        case["evaluation"]["fidelity"][key] = value
    return _named(change, f"fidelity {key}={value!r}")


def _drop_metric(key):
    def change(case):
        del case["evaluation"]["metrics"][key]
    return _named(change, f"no {key}")


def _drop_fidelity(key):
    def change(case):
        del case["evaluation"]["fidelity"][key]
    return _named(change, f"no fidelity {key}")


def _candidate(key, value):
    def change(case):
        case["evaluation"]["candidate"][key] = value
    return _named(change, f"candidate {key}={value[:8]!r}")


def _few_items(case):
    case["rows"] = case["rows"][:150]
    case["evaluation"]["items"] = 150


def _one_prediction_short(case):
    case["rows"] = case["rows"][:-1]


def _one_row_twice(case):
    case["rows"] = case["rows"][:-1] + case["rows"][:1]


def _no_adapters(case):
    case["adapter_paths"] = []


def _no_predictions(case):
    case["rows"], case["evaluation"]["items"] = [], 0


def _verify(statuses):
    def change(case):
        case["verify"]["checks"] = statuses
    return _named(change, f"verify checks {statuses}")


def _second_adapter_unverified(case):
    case["adapter_paths"] = [ADAPTER, "models/other"]


def _validation(**values):
    def change(case):
        case["validation"] = values
    return _named(change, f"validation {values}")


def _rows(**counts):
    def change(case):
        case["rows"] = scored_rows(**counts)
        case["evaluation"]["items"] = len(case["rows"])
    return _named(change, "rows " + " ".join(f"{k}={v}" for k, v in counts.items()))


def _row_without_majority(case):
    del case["rows"][5]["majority"]


FAILURES = [
    # name of the one failing check, change to the passing case, what its detail must say
    ("strict accuracy", _metric("strict_overall", 0.45), "threshold check failed"),
    ("strict accuracy, stage 1", _metric("strict_stage_1", 0.64), "threshold check failed"),
    ("strict accuracy, stage 2", _metric("strict_stage_2", 0.2), "threshold check failed"),
    ("strict accuracy, stage 3", _metric("strict_stage_3", 0.59), "threshold check failed"),
    ("beats the majority answer", _rows(wins=20, losses=90, both_right=150, both_wrong=40),
     "wins 20, ties 190, losses 90"),
    ("beats the majority answer", _rows(wins=40, losses=40, both_right=130, both_wrong=90),
     "wins 40, ties 220, losses 40"),
    ("beats the majority answer", _rows(wins=12, losses=8, both_right=160, both_wrong=120),
     "needs wins > losses and p < 0.05"),
    ("beats the majority answer", _row_without_majority, "lack strict/majority correctness: fail closed"),
    ("merge fidelity: ties", _fidelity("ties", 0.98), "threshold check failed"),
    ("merge fidelity: strict drop", _fidelity("strict_drop", 0.02), "threshold check failed"),
    ("merge fidelity: max logit difference", _fidelity("max_logit_difference", 0.5), "threshold check failed"),
    ("test items", _few_items, "threshold check failed"),
    ("strict accuracy", _metric("strict_overall", math.nan), "not a finite number: fail closed"),
    ("strict accuracy", _metric("strict_overall", math.inf), "not a finite number: fail closed"),
    ("strict accuracy", _metric("strict_overall", "0.9"), "not a finite number: fail closed"),
    ("strict accuracy", _metric("strict_overall", True), "not a finite number: fail closed"),
    ("strict accuracy, stage 2", _metric("strict_stage_2", math.nan), "not a finite number: fail closed"),
    ("merge fidelity: max logit difference", _fidelity("max_logit_difference", math.nan), "not a finite number"),
    ("merge fidelity: strict drop", _fidelity("strict_drop", -math.inf), "not a finite number"),
    ("strict accuracy", _drop_metric("strict_overall"), "missing"),
    ("strict accuracy, stage 3", _drop_metric("strict_stage_3"), "missing"),
    ("strict accuracy, stage 1", _metric("strict_stage_1", None), "missing"),  # a stage with no items scores None
    ("merge fidelity: ties", _drop_fidelity("ties"), "missing"),
    ("evaluation is of this merged model", _candidate("merged_sha256", "d" * 64),
     "stale: evaluated another merged model"),
    ("evaluation is of this test split", _candidate("test_sha256", "e" * 64), "stale: evaluated another test split"),
    ("evaluation in the release's mode", _candidate("mode", "context"),
     "evaluated in 'context' mode, released in 'independent'"),
    ("predictions complete", _one_prediction_short, "299 scored predictions (299 distinct items) for 300 items"),
    ("predictions complete", _one_row_twice, "300 scored predictions (299 distinct items) for 300 items"),
    ("adapters verified", _no_adapters, "names no merged adapter: fail closed"),
    ("data validation passed", _validation(expectations_evaluated=None, expectations_failed=0), "0 failed of None"),
    ("adapters verified", _verify({ADAPTER: {"adapter hash": "FAILED", "continuity": "skipped"}}),
     "not verified: ['models/baseline']"),
    ("adapters verified", _verify({}), "not verified: ['models/baseline']"),
    ("adapters verified", _verify({ADAPTER: {}}), "not verified: ['models/baseline']"),
    ("adapters verified", _second_adapter_unverified, "not verified: ['models/other']"),
    ("data validation passed", _validation(expectations_evaluated=15, expectations_failed=2),
     "2 failed of 15 expectations"),
    ("data validation passed", _validation(expectations_evaluated=0, expectations_failed=0),
     "0 failed of 0 expectations"),
    ("data validation passed", _validation(), "None failed of None expectations"),
]


@pytest.mark.parametrize(("name", "change", "detail"), FAILURES,
                         ids=[f"{n}: {change.__name__.lstrip('_')}" for n, change, _ in FAILURES])
def test_each_check_fails_alone_and_says_why(name, change, detail):
    case = passing_case()
    change(case)
    failed = only_failure(checks_of(case))
    assert failed["name"] == name
    assert failed["passed"] is False
    assert detail in failed["detail"], failed["detail"]


def test_a_non_finite_metric_is_recorded_as_no_value():
    case = passing_case()
    _metric("strict_overall", math.nan)(case)
    failed = by_name(checks_of(case), "strict accuracy")
    assert failed["value"] is None and failed["threshold"] == 0.5
    json.dumps(failed, allow_nan=False)  # the report stays writable (write_json refuses NaN)


def test_no_predictions_fail_completeness_and_the_majority_comparison_and_the_size():
    case = passing_case()
    _no_predictions(case)
    failed = [c["name"] for c in checks_of(case) if not c["passed"]]
    assert failed == ["predictions complete", "test items", "beats the majority answer"]


def test_stale_hash_detail_names_the_stage_to_rerun():
    case = passing_case()
    _candidate("merged_sha256", "d" * 64)(case)
    check = by_name(checks_of(case), "evaluation is of this merged model")
    assert check["value"] == "d" * 64 and check["threshold"] == MERGED_SHA
    assert "dvc repro evaluate_merged" in check["detail"]


def test_table_lists_every_check_and_the_result():
    case = passing_case()
    _metric("strict_overall", 0.4)(case)
    checks = checks_of(case)
    text = gate.table({"passed": False, "checks": checks})
    lines = text.splitlines()
    assert len(lines) == len(CHECK_NAMES) + 1 and lines[-1] == "  gate: FAILED"
    assert [ln.split()[0] for ln in lines[:-1]] == ["FAILED" if n == "strict accuracy" else "ok" for n in CHECK_NAMES]


# --- run and verdict on files ------------------------------------------------------------------------------------

def write_project(root, case: dict) -> dict:
    """The files `run` reads, from a gate_checks case; the evaluation's test_sha256 is that of the written split."""
    merged, release, splits, reports = root / "models" / "merged", root / "reports" / "release", \
        root / "data" / "split", root / "reports"
    write_jsonl(splits / "test.jsonl", [{"img_id": r["img_id"], "question": r["question"]} for r in case["rows"]])
    evaluation = copy.deepcopy(case["evaluation"])
    evaluation["candidate"]["test_sha256"] = sha256_file(splits / "test.jsonl")
    # A merged folder per model, and a manifest whose hashes are those of these files (as merge writes them).
    manifest = copy.deepcopy(case["manifest"]) | {"route": {"1": "model", "2": "model", "3": "model"}, "serving": {}}
    for name in manifest["models"]:
        (merged / name).mkdir(parents=True)
        (merged / name / "model.safetensors").write_bytes(b"weights of " + name.encode())
        write_json(merged / name / LINEAGE_FILE, {"adapter": {"path": ADAPTER, "adapter_sha256": "c" * 64}})
        manifest["models"][name] = sha256_folder(merged / name)
    manifest["merged_sha256"] = candidate_hash(manifest)
    write_json(merged / MANIFEST, manifest)
    if evaluation["candidate"]["merged_sha256"] == MERGED_SHA:  # the case evaluated this candidate
        evaluation["candidate"]["merged_sha256"] = manifest["merged_sha256"]
    release.mkdir(parents=True)
    (release / EVALUATION).write_text(json.dumps(evaluation), encoding="utf-8")  # allows NaN, as json does
    write_jsonl(release / PREDICTIONS, case["rows"])
    write_json(reports / "verify_adapters.json", case["verify"])
    write_json(reports / "data_validation.json", case["validation"])
    return {"release_dir": release, "merged_dir": merged, "splits_dir": splits,
            "verify_report": reports / "verify_adapters.json",
            "validation_report": reports / "data_validation.json", "out": reports / "gate.json"}


def run_gate(root, case: dict) -> tuple[dict, dict]:
    paths = write_project(root, case)
    report = gate.run(**paths, gate=case["gate"])
    return report, paths


def test_run_writes_a_passing_gate_report(tmp_path):
    case = passing_case()
    report, paths = run_gate(tmp_path, case)
    written = read_json(paths["out"])
    assert written == report
    assert written["passed"] is True and written["failed"] == []
    merged_sha256 = read_json(paths["merged_dir"] / MANIFEST)["merged_sha256"]
    assert written["candidate"] == {"approach": "baseline", "mode": "independent", "merged_sha256": merged_sha256,
                                    "test_sha256": sha256_file(paths["splits_dir"] / "test.jsonl")}
    assert [c["name"] for c in written["checks"]] == CHECK_NAMES
    for c in written["checks"]:
        assert set(c) == {"name", "passed", "value", "threshold", "detail"} and c["passed"] is True


@pytest.mark.parametrize(("value", "detail"), [(0.42, "threshold check failed"),
                                               (math.nan, "not a finite number")])
def test_run_writes_a_failed_gate_report_too(tmp_path, value, detail):
    case = passing_case()
    _metric("strict_overall", value)(case)
    report, paths = run_gate(tmp_path, case)
    written = read_json(paths["out"])
    assert written == report
    assert written["passed"] is False and written["failed"] == ["strict accuracy"]
    assert detail in by_name(written["checks"], "strict accuracy")["detail"]


def test_run_fails_the_split_check_when_the_test_file_is_not_the_evaluated_one(tmp_path):
    case = passing_case()
    paths = write_project(tmp_path, case)
    with (paths["splits_dir"] / "test.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"img_id": "late", "question": "added after evaluation"}\n')
    report = gate.run(**paths, gate=case["gate"])
    assert report["failed"] == ["evaluation is of this test split"]
    assert read_json(paths["out"])["passed"] is False


def test_run_reads_the_adapter_paths_from_the_merged_lineage(tmp_path):
    case = passing_case()
    case["verify"]["checks"] = {"models/elsewhere": {"adapter hash": "ok"}}
    report, _ = run_gate(tmp_path, case)
    assert report["failed"] == ["adapters verified"]
    assert "not verified: ['models/baseline']" in by_name(report["checks"], "adapters verified")["detail"]


def remerge(merged_dir):
    """What a new merge leaves: other weights, and a manifest consistent with them."""
    manifest = read_json(merged_dir / MANIFEST)
    for name in manifest["models"]:
        (merged_dir / name / "model.safetensors").write_bytes(b"other weights")
        manifest["models"][name] = sha256_folder(merged_dir / name)
    manifest["merged_sha256"] = candidate_hash(manifest)
    write_json(merged_dir / MANIFEST, manifest)


def test_verdict_checks_the_files_on_disk_not_only_the_manifest(tmp_path):
    _, paths = run_gate(tmp_path, passing_case())
    weights = paths["merged_dir"] / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-2])  # truncated after gating
    with pytest.raises(SurgvqaError, match="changed after the merge"):
        gate.verdict(paths["out"], paths["merged_dir"], paths["splits_dir"] / "test.jsonl")
    _, paths = run_gate(tmp_path / "again", passing_case())
    manifest = read_json(paths["merged_dir"] / MANIFEST)
    write_json(paths["merged_dir"] / MANIFEST, manifest | {"mode": "context"})  # edited, hash left as it was
    with pytest.raises(SurgvqaError, match="the manifest was edited"):
        gate.verdict(paths["out"], paths["merged_dir"], paths["splits_dir"] / "test.jsonl")


def test_verdict_returns_a_passed_fresh_report(tmp_path):
    report, paths = run_gate(tmp_path, passing_case())
    assert gate.verdict(paths["out"], paths["merged_dir"], paths["splits_dir"] / "test.jsonl") == report


def test_verdict_refuses_a_gate_made_for_another_merged_model(tmp_path):
    case = passing_case()
    _, paths = run_gate(tmp_path, case)
    remerge(paths["merged_dir"])
    with pytest.raises(SurgvqaError, match="stale"):
        gate.verdict(paths["out"], paths["merged_dir"], paths["splits_dir"] / "test.jsonl")


def test_verdict_refuses_a_gate_made_on_another_test_split(tmp_path):
    _, paths = run_gate(tmp_path, passing_case())
    test_file = paths["splits_dir"] / "test.jsonl"
    test_file.write_text(test_file.read_text(encoding="utf-8") + '{"img_id": "x", "question": "new"}\n',
                         encoding="utf-8")
    with pytest.raises(SurgvqaError, match="stale"):
        gate.verdict(paths["out"], paths["merged_dir"], test_file)


def test_verdict_refuses_a_failed_gate_and_names_the_failed_check(tmp_path):
    case = passing_case()
    _fidelity("ties", 0.9)(case)
    _, paths = run_gate(tmp_path, case)
    with pytest.raises(SurgvqaError, match="FAILED") as e:
        gate.verdict(paths["out"], paths["merged_dir"], paths["splits_dir"] / "test.jsonl")
    merged_sha256 = read_json(paths["merged_dir"] / MANIFEST)["merged_sha256"]
    assert "merge fidelity: ties" in str(e.value) and merged_sha256[:12] in str(e.value)


def test_verdict_calls_a_failed_and_stale_gate_stale(tmp_path):
    case = passing_case()
    _metric("strict_overall", 0.1)(case)
    _, paths = run_gate(tmp_path, case)
    remerge(paths["merged_dir"])
    with pytest.raises(SurgvqaError, match="stale"):
        gate.verdict(paths["out"], paths["merged_dir"], paths["splits_dir"] / "test.jsonl")


def test_verdict_without_a_gate_report_says_how_to_make_one(tmp_path):
    paths = write_project(tmp_path, passing_case())
    with pytest.raises(SurgvqaError, match="dvc repro gate"):
        gate.verdict(paths["out"], paths["merged_dir"], paths["splits_dir"] / "test.jsonl")


def test_majority_comparison_without_a_significance_is_reported_not_required():
    """gate.significance: null (the test profile) keeps the comparison in the report but does not require it."""
    rows = [{"strict": False, "majority": True}] * 6 + [{"strict": True, "majority": True}] * 2
    required = gate.majority_check(rows, 0.05)
    reported = gate.majority_check(rows, None)
    assert not required["passed"] and reported["passed"]
    assert reported["value"] == required["value"] == {"wins": 0, "ties": 2, "losses": 6,
                                                       "p_value": required["value"]["p_value"]}
    assert "losses 6" in reported["detail"] and "not required: gate.significance is null" in reported["detail"]
    with pytest.raises(Exception, match="significance"):
        section("gate", significance=1.0)
