"""Promotion and rollback against a real MLflow registry: the SQLite store, and a real `mlflow server` on
127.0.0.1. Candidates are the tiny release; variants of it (another merged-model hash, other predictions, a
failed gate) are made by editing copies of its files, as a different candidate's files would differ."""

import json
import shutil

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json, read_jsonl, write_json, write_jsonl
from surgvqa.model.lineage import sha256_file
from surgvqa.params.promote import PromoteParams
from surgvqa.params.tracking import TrackingParams
from surgvqa.release import promote, registry, rollback
from surgvqa.release.files import candidate_hash

pytestmark = pytest.mark.slow
NAME = "tiny-vqa"


def _candidate(tiny_release, where, tag: str, gate_passed: bool = True, strict=None) -> dict:
    """A copy of the tiny release as a distinct candidate: its own merged-model hash, its predictions' strict
    flags replaced by `strict(row)` when given, and a gate report that passed or failed."""
    merged, release = where / "merged", where / "release"
    shutil.copytree(tiny_release["merged"], merged)
    shutil.copytree(tiny_release["release"], release)
    manifest = read_json(merged / "manifest.json") | {"variant": tag}  # another candidate: another manifest
    manifest["merged_sha256"] = candidate_hash(manifest)
    write_json(merged / "manifest.json", manifest)
    test_sha256 = sha256_file(tiny_release["splits"] / "test.jsonl")
    evaluation = read_json(release / "evaluation.json")
    evaluation["candidate"]["merged_sha256"] = manifest["merged_sha256"]
    write_json(release / "evaluation.json", evaluation)
    if strict is not None:
        write_jsonl(release / "predictions.jsonl", [{**r, "strict": strict(r)}
                                                    for r in read_jsonl(release / "predictions.jsonl")])
    checks = [{"name": "strict accuracy", "passed": gate_passed, "value": 0.5, "threshold": 0.4,
               "detail": "strict_overall = 0.5 >= 0.4" if gate_passed else "threshold check failed"}]
    write_json(where / "gate.json", {"passed": gate_passed, "failed": [] if gate_passed else ["strict accuracy"],
                                     "candidate": {"merged_sha256": manifest["merged_sha256"],
                                                   "test_sha256": test_sha256},
                                     "checks": checks})
    return {"merged_dir": merged, "release_dir": release, "gate_path": where / "gate.json",
            "test_file": tiny_release["splits"] / "test.jsonl", "report_path": where / "promotion.json"}


def _promote(candidate: dict, uri: str, max_stage_drop: float = 0.02) -> dict:
    return promote.run(**candidate, promote=PromoteParams(NAME, max_stage_drop),
                       tracking=TrackingParams(uri, "tiny"))


def _rollback(uri: str, to_version=None) -> dict:
    return rollback.run(to_version, PromoteParams(NAME, 0.02), TrackingParams(uri, "tiny"))


def _load(uri: str, model_uri: str):
    """mlflow.pyfunc.load_model against the store at `uri`, as a user would (tracking URI set, then unset)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.pyfunc.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(None)


def _aliases(uri: str) -> dict:
    return {alias: str(v) for alias, v in registry.client_for(uri).get_registered_model(NAME).aliases.items()}


def test_promotion_gate_failure_champion_comparison_and_rollback(tiny_release, tmp_path):
    import pandas as pd

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry.client_for(uri)
    first = _candidate(tiny_release, tmp_path / "a", "a")
    report = _promote(first, uri)
    assert report["promoted"] and report["version"] == "1" and _aliases(uri) == {"champion": "1", "challenger": "1"}
    tags = client.get_model_version(NAME, "1").tags
    lineage = json.loads(tags["lineage"])
    merged_lineage = read_json(first["merged_dir"] / "model" / "lineage.json")
    assert lineage["models"]["model"]["adapter_sha256"] == merged_lineage["adapter"]["adapter_sha256"]
    assert tags["merged_sha256"] == read_json(first["merged_dir"] / "manifest.json")["merged_sha256"]
    assert tags["gate.passed"] == "true"
    assert tags["test_split_sha256"] == sha256_file(first["test_file"])
    assert tags["gate.strict accuracy"].startswith("ok")
    assert tags["git_commit"] and tags["base_sha256"] == merged_lineage["base"]["content_hash"]
    assert tags["profile"] == "embedded"  # the profile params.yaml names (the tests run in the project root)

    # The registered model answers the usual MLflow way, exactly as the gate measured it.
    served = _load(uri, f"models:/{NAME}@champion")
    rows = read_jsonl(first["release_dir"] / "predictions.jsonl")[:5]
    frame = pd.DataFrame({"image": [str(tiny_release["raw"] / "images" / f"{r['img_id']}.jpg") for r in rows],
                          "question": [r["question"] for r in rows]})
    assert served.predict(frame) == [r["prediction"] for r in rows]

    # Re-running is safe: the same version, no second registration, no new history event.
    events = registry.history(client, NAME)
    assert _promote(first, uri)["version"] == "1" and len(client.search_model_versions(f"name = '{NAME}'")) == 1
    assert registry.history(client, NAME) == events

    # A failed gate: registered (challenger) for the record, never champion, and the command fails.
    failed = _candidate(tiny_release, tmp_path / "b", "b", gate_passed=False)
    with pytest.raises(SurgvqaError, match="not promoted: gate failed: strict accuracy. champion stays at v1"):
        _promote(failed, uri)
    assert _aliases(uri) == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(NAME, "2").tags["gate.passed"] == "false"

    # Worse than the champion on the same items: refused, champion unchanged.
    worse = _candidate(tiny_release, tmp_path / "c", "c", strict=lambda r: False)
    with pytest.raises(SurgvqaError, match=r"against champion v1: wins 0, .* losses [1-9]"):
        _promote(worse, uri)
    assert _aliases(uri)["champion"] == "1" and read_json(worse["report_path"])["promoted"] is False

    # Better: champion moves; then rollback returns it, and a second rollback changes nothing.
    better = _candidate(tiny_release, tmp_path / "d", "d", strict=lambda r: True)
    assert _promote(better, uri)["champion"] == "4" and _aliases(uri) == {"champion": "4", "challenger": "4"}
    assert _rollback(uri) == {"champion": "1", "previous": "4", "changed": True}
    assert _rollback(uri)["changed"] is False and _aliases(uri)["champion"] == "1"
    with pytest.raises(SurgvqaError, match="did not pass its gate"):
        _rollback(uri, to_version="2")
    actions = [(e["action"], e["version"]) for e in registry.history(client, NAME)]
    assert actions == [("promote", "1"), ("refused", "2"), ("refused", "3"), ("promote", "4"), ("rollback", "1")]

    # Promoting the rolled-back candidate again would undo the rollback silently: refused, champion unchanged.
    with pytest.raises(SurgvqaError, match="was rolled back from champion.*rollback --to 4"):
        _promote(better, uri)
    assert _aliases(uri)["champion"] == "1"

    # The champion re-gated with stricter thresholds now fails: said plainly, with the way back; nothing moves.
    regated = _candidate(tiny_release, tmp_path / "a2", "a", gate_passed=False)
    with pytest.raises(SurgvqaError, match="v1 was registered with gate.passed = true.*It is the champion"):
        _promote(regated, uri)
    assert _aliases(uri)["champion"] == "1" and client.get_model_version(NAME, "1").tags["gate.passed"] == "true"

    # A champion evaluated on another test split is not comparable: fail closed.
    client.set_model_version_tag(NAME, "1", "test_split_sha256", "0" * 64)
    with pytest.raises(SurgvqaError, match="not comparable"):
        _promote(_candidate(tiny_release, tmp_path / "e", "e", strict=lambda r: True), uri)
    assert _aliases(uri)["champion"] == "1"


def test_a_stale_gate_registers_nothing(tiny_release, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    candidate = _candidate(tiny_release, tmp_path / "a", "a")
    gate = read_json(candidate["gate_path"])
    write_json(candidate["gate_path"], {**gate, "candidate": {**gate["candidate"], "merged_sha256": "f" * 64}})
    with pytest.raises(SurgvqaError, match="is stale: it gated another merged model or test split"):
        _promote(candidate, uri)
    assert registry.client_for(uri).search_registered_models() == []  # nothing was registered


def test_compare_with_champion_counts_pairs_and_stage_drops():
    def rows(flags):
        return [{"img_id": f"i{k}", "question": "q", "mode": "independent", "stage": 1 + k % 3, "strict": f}
                for k, f in enumerate(flags)]

    champion = rows([True, True, False, False, True, False])
    same = promote.compare_with_champion(rows([True, True, False, False, True, False]), champion, 0.0)
    assert same["passed"] and (same["wins"], same["ties"], same["losses"]) == (0, 6, 0)
    swap = promote.compare_with_champion(rows([False, True, True, False, True, False]), champion, 0.5)
    assert swap["passed"] and (swap["wins"], swap["losses"]) == (1, 1) and swap["stage_drop"]["1"] == 0.5
    assert not promote.compare_with_champion(rows([False, True, True, False, True, False]), champion, 0.4)["passed"]
    assert "not comparable" in promote.compare_with_champion(rows([True] * 5), champion, 1.0)["detail"]


def test_promotion_through_a_real_mlflow_server(tiny_release, tmp_path, mlflow_server):
    import pandas as pd

    candidate = _candidate(tiny_release, tmp_path / "a", "a")
    assert _promote(candidate, mlflow_server)["champion"] == "1"
    assert _aliases(mlflow_server) == {"champion": "1", "challenger": "1"}
    assert not list((tmp_path / "a").glob("mlruns"))  # artifacts went to the server, not a local folder
    assert any((tmp_path / "artifacts").rglob("manifest.json"))
    served = _load(mlflow_server, f"models:/{NAME}@champion")
    row = read_jsonl(candidate["release_dir"] / "predictions.jsonl")[0]
    frame = pd.DataFrame({"image": [str(tiny_release["raw"] / "images" / f"{row['img_id']}.jpg")],
                          "question": [row["question"]]})
    assert served.predict(frame) == [row["prediction"]]


def test_a_served_request_must_name_an_existing_image(tiny_release):
    from surgvqa.release.pyfunc import image_path

    with pytest.raises(SurgvqaError, match="not an existing image file"):
        image_path(str(tiny_release["raw"] / "images" / "missing.jpg"))
    with pytest.raises(SurgvqaError, match="not an existing image file"):
        image_path("a\0b")
