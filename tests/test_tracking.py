"""MLflow tracking: a server that is down or silent fails a stage within seconds with what to do, and every run
carries the tags that tell reruns apart (kind, commit, params digest, DVC experiment) and a description."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from surgvqa import tracking
from surgvqa.errors import SurgvqaError
from surgvqa.io import write_json
from surgvqa.model.lineage import sha256_file
from surgvqa.release.files import MANIFEST, candidate_hash, sha256_folder
from tests.conftest import section
from tests.scratch import run
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]
# Generous: the params allow one try of request_timeout (5 s) before the error, and a stage's subprocess spends
# 20-30 s importing torch and transformers on a loaded 2-core runner. MLflow's defaults take minutes (7 retries
# with backoff to a refused port, 120 s per try to a silent one).
BOUND_S = 60

# The training stage's own call: tracking.start_run with the params' tracking section.
START_RUN = """
import sys
from surgvqa import tracking
from surgvqa.params.schema import load_params
with tracking.start_run(load_params(sys.argv[1]).tracking, "sequential-stage_1", {"approach": "sequential"}):
    print("a run was started")
"""


@pytest.fixture
def silent_server():
    """A TCP port on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers: a server that
    hangs. (No address off this machine is used: a black-holed address is simulated here, on loopback.)"""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def _assert_fails_fast(args: list[str], uri: str, tmp_path: Path) -> str:
    started = time.monotonic()
    done = run(args, tmp_path, env={"SURGVQA_TRACKING_URI": uri})
    took = time.monotonic() - started
    assert done.returncode != 0 and "a run was started" not in done.stdout, done.stdout + done.stderr
    assert took < BOUND_S, f"took {took:.1f} s"
    err = done.stderr
    assert f"the MLflow tracking server {uri} (SURGVQA_TRACKING_URI) did not answer within 5 s" in err, err
    assert "SURGVQA_TRACKING_URI=sqlite:///mlflow.db" in err and "mlflow-export-import" in err, err
    assert "Start it (e.g. `mlflow server --host 127.0.0.1" in err, err
    return err


def test_a_training_run_fails_fast_when_the_server_is_down(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    err = _assert_fails_fast([sys.executable, "-c", START_RUN, str(REPO / "params.yaml")], uri, tmp_path)
    assert "Connection refused" in err or "Failed to establish a new connection" in err, err


def test_a_training_run_fails_fast_when_the_server_never_answers(tmp_path, silent_server):
    err = _assert_fails_fast([sys.executable, "-c", START_RUN, str(REPO / "params.yaml")], silent_server, tmp_path)
    assert "timed out" in err.lower(), err


def test_the_compare_stage_fails_fast_before_its_work_when_the_server_is_down(tmp_path, silent_server):
    out = tmp_path / "out"
    err = _assert_fails_fast([sys.executable, "-m", "surgvqa.evaluate.compare", "--params", str(REPO / "params.yaml"),
                              "--eval", str(REPO / "reports" / "eval"), "--out", str(out / "compare.md"),
                              "--metrics", str(out / "compare.json"), "--charts", str(out / "charts")],
                             silent_server, tmp_path)
    assert err.splitlines()[-1].startswith("error: the MLflow tracking server") and not out.exists()  # nothing written


def test_evaluate_fails_fast_before_its_work_when_the_server_is_down(tmp_path):
    out = tmp_path / "eval"
    # No adapters, splits or images exist: any work before the server check would fail with another error.
    err = _assert_fails_fast([sys.executable, "-m", "surgvqa.evaluate.evaluate", "--params", str(REPO / "params.yaml"),
                              "--approach", "sequential", "--models", str(tmp_path / "models"),
                              "--splits", str(tmp_path / "split"), "--out", str(out)],
                             f"http://127.0.0.1:{free_port()}", tmp_path)
    assert err.splitlines()[-1].startswith("error: the MLflow tracking server") and not out.exists(), err


def _tiny_candidate(where: Path) -> dict[str, Path]:
    """A gated candidate as promote reads it, with one small file for a merged model: promote reads the gate
    report, the manifest, the files' hashes and the lineage before it talks to the server."""
    merged, release = where / "merged", where / "release"
    (merged / "sequential_1").mkdir(parents=True)
    (merged / "sequential_1" / "config.json").write_text("{}\n")
    write_json(merged / "sequential_1" / "lineage.json", {"approach": "sequential", "stage": 1})
    manifest = {"approach": "sequential", "models": {"sequential_1": sha256_folder(merged / "sequential_1")}}
    manifest["merged_sha256"] = candidate_hash(manifest)
    write_json(merged / MANIFEST, manifest)
    test = where / "test.jsonl"
    test.write_text('{"img_id": "a", "question": "q", "answer": "a"}\n')
    gate = where / "gate.json"
    write_json(gate, {"passed": True, "candidate": {"merged_sha256": manifest["merged_sha256"],
                                                    "test_sha256": sha256_file(test)}})
    write_json(release / "evaluation.json", {"candidate": {"merged_sha256": manifest["merged_sha256"]}})
    return {"merged": merged, "release": release, "gate": gate, "test": test, "report": where / "promotion.json"}


def test_promote_fails_fast_when_the_server_is_down(tmp_path):
    paths = _tiny_candidate(tmp_path / "candidate")
    err = _assert_fails_fast(["surgvqa", "promote", "--params", str(REPO / "params.yaml"),
                              *(a for k, p in paths.items() for a in (f"--{k}", str(p)))],
                             f"http://127.0.0.1:{free_port()}", tmp_path)
    assert err.splitlines()[-1].startswith("error: the MLflow tracking server") and not paths["report"].exists(), err


def test_artifact_uploads_run_with_the_limits_from_before_the_run_not_the_runs_bounds(tmp_path, monkeypatch):
    """An adapter of tens of MB to S3 over a slow link may rightly take longer than request_timeout: uploads get
    MLflow's limits (or the user's), while the run's metadata requests stay bounded."""
    import mlflow
    from mlflow.tracking import MlflowClient

    variables = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    monkeypatch.delenv(variables[0], raising=False)  # MLflow's default
    monkeypatch.setenv(variables[1], "9")  # the user's own choice
    during_upload = []

    def recording(upload):  # the real upload, noting the limits it ran with
        def call(*args, **kwargs):
            during_upload.append(tuple(os.environ.get(v) for v in variables))
            return upload(*args, **kwargs)
        return call

    monkeypatch.setattr(mlflow, "log_artifact", recording(mlflow.log_artifact))
    monkeypatch.setattr(mlflow, "log_artifacts", recording(mlflow.log_artifacts))
    store = section("tracking", uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}\n")
    with tracking.start_run(store, "baseline", {}) as active:
        bounded = tuple(os.environ.get(v) for v in variables)
        tracking.log_dir(adapter, "adapter")
        tracking.log_file(adapter / "adapter_config.json", "report")
        after_upload = tuple(os.environ.get(v) for v in variables)
    assert bounded == after_upload == (str(store.request_timeout), str(store.request_retries))
    assert during_upload == [(None, "9"), (None, "9")]
    assert tuple(os.environ.get(v) for v in variables) == (None, "9")
    uploaded = {a.path for a in MlflowClient(tracking_uri=store.uri).list_artifacts(active.info.run_id)}
    assert uploaded == {"adapter", "report"}


def test_requests_during_a_run_are_bounded_by_the_params_and_the_environment_is_restored(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    import mlflow.environment_variables as e

    params = section("tracking", request_timeout=3, request_retries=1)
    with tracking.bounded_requests(params):
        assert (e.MLFLOW_HTTP_REQUEST_TIMEOUT.get(), e.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()) == (3, 1)
    assert e.MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 120 and not e.MLFLOW_HTTP_REQUEST_MAX_RETRIES.defined


def test_a_local_store_needs_no_server(tmp_path):
    tracking.check_server(section("tracking", uri=f"sqlite:///{tmp_path / 'x.db'}"))  # no network, no error


def test_credentials_never_appear_in_the_error(monkeypatch):
    monkeypatch.setenv("SURGVQA_TRACKING_URI", f"http://user:secret@127.0.0.1:{free_port()}")
    with pytest.raises(SurgvqaError) as caught:
        tracking.check_server(section("tracking"))
    assert "secret" not in str(caught.value) and "http://127.0.0.1:" in str(caught.value)


def test_every_run_carries_kind_commit_params_digest_dvc_experiment_and_a_description(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from surgvqa.model.lineage import git_commit

    store = section("tracking", uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    train, lora = section("train"), section("lora")
    monkeypatch.setenv("DVC_STAGE", "train_sequential@1")
    monkeypatch.setenv("DVC_EXP_NAME", "fiery-ruin")
    with tracking.start_run(store, "sequential-stage_1", {"approach": "sequential", "stage": "1"},
                            params={"train": train, "lora": lora}) as first:
        pass
    monkeypatch.delenv("DVC_EXP_NAME")
    changed = {"train": dataclasses.replace(train, seed=train.seed + 1), "lora": lora}
    with tracking.start_run(store, "sequential-stage_1", {"approach": "sequential"}, params=changed) as second:
        pass

    client = MlflowClient(tracking_uri=store.uri)
    a, b = client.get_run(first.info.run_id).data.tags, client.get_run(second.info.run_id).data.tags
    digest = tracking.params_digest({"lora": lora, "train": train})  # the order of the sections does not matter
    assert a["kind"] == b["kind"] == "training" and a["name"] == b["name"] == "sequential-stage_1"
    assert a["params_digest"] == digest and b["params_digest"] != digest and len(digest) == 8
    assert a["git_commit"] == str(git_commit()["sha"]) and a["approach"] == "sequential"
    assert a["dvc_stage"] == b["dvc_stage"] == "train_sequential@1"
    assert a["dvc_experiment"] == "fiery-ruin" and "dvc_experiment" not in b
    # The run list tells the two apart by name, and each says what it is.
    assert a["mlflow.runName"] == f"sequential-stage_1 (fiery-ruin, {digest})"
    assert b["mlflow.runName"] == f"sequential-stage_1 ({b['params_digest']})"
    assert a["mlflow.note.content"].startswith(
        "Training run `sequential-stage_1`: the sequential approach's LoRA adapter for stage 1.")
    assert f"params digest `{digest}`" in a["mlflow.note.content"] and "`fiery-ruin`" in a["mlflow.note.content"]
    # The experiment carries the model-training kind tag (for the clients that read it) and a description.
    experiment = client.get_experiment_by_name(store.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"] == tracking.EXPERIMENT_NOTE


def test_a_failing_block_marks_the_run_failed(tmp_path):
    from mlflow.tracking import MlflowClient

    store = section("tracking", uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(RuntimeError, match="diverged"):
        with tracking.start_run(store, "baseline", {}, kind="training") as active:
            raise RuntimeError("diverged")
    assert MlflowClient(tracking_uri=store.uri).get_run(active.info.run_id).info.status == "FAILED"


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown run kind 'trainng'"):
        tracking.run_tags("trainng", "x", None)
