"""Promotion and rollback against a real MLflow registry: the SQLite store, and a real `mlflow server` on
127.0.0.1. Candidates are the tiny release; variants of it (another merged-model hash, other predictions, a
failed gate) are made by editing copies of its files, as a different candidate's files would differ."""

import json

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json, read_jsonl, write_json
from surgvqa.model.lineage import sha256_file
from surgvqa.params.promote import PromoteParams
from surgvqa.release import promote, registry, rollback
from tests.release.promote_helpers import NAME, make_candidate, tracking_params

pytestmark = pytest.mark.slow


def _promote(candidate: dict, uri: str, max_stage_drop: float = 0.02) -> dict:
    return promote.run(**candidate, promote=PromoteParams(NAME, max_stage_drop), tracking=tracking_params(uri))


def _rollback(uri: str, to_version=None) -> dict:
    return rollback.run(to_version, PromoteParams(NAME, 0.02), tracking_params(uri))


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
    first = make_candidate(tiny_release, tmp_path / "a", "a")
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
    failed = make_candidate(tiny_release, tmp_path / "b", "b", gate_passed=False)
    with pytest.raises(SurgvqaError, match="not promoted: gate failed: strict accuracy. champion stays at v1"):
        _promote(failed, uri)
    assert _aliases(uri) == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(NAME, "2").tags["gate.passed"] == "false"

    # Worse than the champion on the same items: refused, champion unchanged.
    worse = make_candidate(tiny_release, tmp_path / "c", "c", strict=lambda r: False)
    with pytest.raises(SurgvqaError, match=r"against champion v1: wins 0, .* losses [1-9]"):
        _promote(worse, uri)
    assert _aliases(uri)["champion"] == "1" and read_json(worse["report_path"])["promoted"] is False

    # Better: champion moves; then rollback returns it, and a second rollback changes nothing.
    better = make_candidate(tiny_release, tmp_path / "d", "d", strict=lambda r: True)
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
    regated = make_candidate(tiny_release, tmp_path / "a2", "a", gate_passed=False)
    with pytest.raises(SurgvqaError, match="v1 was registered with gate.passed = true.*It is the champion"):
        _promote(regated, uri)
    assert _aliases(uri)["champion"] == "1" and client.get_model_version(NAME, "1").tags["gate.passed"] == "true"

    # A champion evaluated on another test split is not comparable: fail closed.
    client.set_model_version_tag(NAME, "1", "test_split_sha256", "0" * 64)
    with pytest.raises(SurgvqaError, match="not comparable"):
        _promote(make_candidate(tiny_release, tmp_path / "e", "e", strict=lambda r: True), uri)
    assert _aliases(uri)["champion"] == "1"


def test_champion_moves_only_from_the_version_the_candidate_was_compared_with(tiny_release, tmp_path):
    """The re-read before the write (MLflow has no compare-and-set on aliases): a champion moved by someone else
    since the caller decided is left alone, and a version whose gate failed is refused whatever is expected."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry.client_for(uri)
    assert _promote(make_candidate(tiny_release, tmp_path / "a", "a"), uri)["champion"] == "1"
    with pytest.raises(SurgvqaError):
        _promote(make_candidate(tiny_release, tmp_path / "b", "b", gate_passed=False), uri)
    with pytest.raises(SurgvqaError, match="against champion v1"):
        _promote(make_candidate(tiny_release, tmp_path / "c", "c", strict=lambda r: False), uri)  # v3: gate passed
    assert registry.move_champion(client, NAME, "3", expected=None) == (False, "1")  # decided before v1 existed
    assert _aliases(uri)["champion"] == "1"
    with pytest.raises(SurgvqaError, match="version 2 did not pass its gate"):
        registry.move_champion(client, NAME, "2", expected="1")
    assert registry.move_champion(client, NAME, "3", expected="1") == (True, "3") and _aliases(uri)["champion"] == "3"
    assert registry.checked_champion(client, NAME).version == 3

    # Champion set outside surgvqa to a failed version: promote and rollback say so instead of serving it.
    client.set_registered_model_alias(NAME, "champion", "2")
    with pytest.raises(SurgvqaError, match="champion points at v2, whose gate.passed is 'false'"):
        registry.checked_champion(client, NAME)
    with pytest.raises(SurgvqaError, match="points at v2, whose gate.passed is 'false': it was moved outside"):
        _promote(make_candidate(tiny_release, tmp_path / "d", "d", strict=lambda r: True), uri)
    assert _aliases(uri)["champion"] == "2"  # refused, not repaired behind the user's back; nothing registered
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 3
    assert _rollback(uri, to_version="3")["changed"] and _aliases(uri)["champion"] == "3"  # the way back


def test_champion_moved_during_a_promotion(tiny_release, tmp_path, monkeypatch, capsys):
    """Promote's two answers to a concurrent move, made deterministic: the real `rollback` on the same store
    moves champion at a fixed point of a promote, as a concurrent process could. Moved between the comparison
    and the move: refused, nothing changed, a rerun compares with the new champion. Moved right after promote's
    own move (the window MLflow's registry leaves open): promote says it was superseded."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry.client_for(uri)
    assert _promote(make_candidate(tiny_release, tmp_path / "a", "a"), uri)["champion"] == "1"
    with pytest.raises(SurgvqaError, match="against champion v1"):  # v2: gate passed, worse than v1
        _promote(make_candidate(tiny_release, tmp_path / "b", "b", strict=lambda r: False), uri)

    real_compare = promote.compare_with_champion

    def compare_then_rollback(*args, **kwargs):
        result = real_compare(*args, **kwargs)
        assert result["passed"] and _rollback(uri, to_version="2")["changed"]  # v1 -> v2 while v3 is compared
        return result

    monkeypatch.setattr(promote, "compare_with_champion", compare_then_rollback)
    tied = make_candidate(tiny_release, tmp_path / "c", "c")  # v3: v1's predictions, so it passes against v1
    with pytest.raises(SurgvqaError, match=r"champion moved from v1 to v2 while v3 was compared with v1 .*"
                                           r"champion is v2 \(moved by another promotion or rollback meanwhile\)"):
        _promote(tied, uri)
    monkeypatch.undo()
    assert _aliases(uri) == {"champion": "2", "challenger": "3"}  # the rollback's champion, untouched
    assert client.get_model_version(NAME, "3").tags["promotion.passed"] == "false"
    report = read_json(tied["report_path"])
    assert (report["promoted"], report["previous_champion"], report["champion"]) == (False, "1", "2")
    refused = registry.history(client, NAME)[-1]
    assert (refused["action"], refused["version"], refused["previous"]) == ("refused", "3", "1")
    assert "champion moved from v1 to v2 while v3 was compared with v1" in refused["reasons"][0]
    assert _promote(tied, uri)["champion"] == "3"  # the rerun compares with v2 (all wrong) and moves from it

    real_move = registry.move_champion

    def move_then_rollback(*args, **kwargs):
        moved = real_move(*args, **kwargs)
        monkeypatch.setattr(registry, "move_champion", real_move)  # the rollback moves as usual
        assert _rollback(uri, to_version="3")["changed"]  # lands after promote's write: v4 -> v3
        return moved

    monkeypatch.setattr(registry, "move_champion", move_then_rollback)
    capsys.readouterr()
    report = _promote(make_candidate(tiny_release, tmp_path / "d", "d", strict=lambda r: True), uri)
    monkeypatch.undo()
    assert (report["version"], report["promoted"], report["champion"]) == ("4", True, "3")
    assert "v4 was made champion, then superseded by v3" in capsys.readouterr().out
    assert _aliases(uri)["champion"] == "3"
    moves = [(e["action"], e["version"], e["previous"]) for e in registry.history(client, NAME)
             if e["action"] in ("promote", "rollback")]
    assert moves == [("promote", "1", None), ("rollback", "2", "1"), ("promote", "3", "2"), ("rollback", "3", "4"),
                     ("promote", "4", "3")]  # the overwritten move recorded last: rollback must not guess
    with pytest.raises(SurgvqaError, match="champion is v3 but the history's last move set v4"):
        _rollback(uri)


def test_a_registered_model_or_experiment_created_concurrently_is_used(tmp_path):
    """Two first promotes at once both find no registered model (and no experiment) and both create it: the one
    that loses the race uses the other's (found by the concurrent test: RESOURCE_ALREADY_EXISTS)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, other = registry.client_for(uri), registry.client_for(uri)
    real_get, real_by_name = client.get_registered_model, client.get_experiment_by_name

    def get_then_other_creates(name):
        try:
            return real_get(name)
        finally:
            other.create_registered_model(name)  # lands between the not-found read and this process's create

    def by_name_then_other_creates(name):
        found = real_by_name(name)
        client.get_experiment_by_name = real_by_name  # once: the read after the conflict is a plain read
        other.create_experiment(name)
        return found

    client.get_registered_model, client.get_experiment_by_name = get_then_other_creates, by_name_then_other_creates
    registry.ensure_registered_model(client, NAME)
    created = registry.experiment_id(client, "tiny")
    assert [m.name for m in other.search_registered_models()] == [NAME]
    assert created == other.get_experiment_by_name("tiny").experiment_id


def test_a_stale_gate_registers_nothing(tiny_release, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    candidate = make_candidate(tiny_release, tmp_path / "a", "a")
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

    candidate = make_candidate(tiny_release, tmp_path / "a", "a")
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
