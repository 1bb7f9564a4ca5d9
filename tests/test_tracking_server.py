"""scripts/tracking_server.sh, the team tracking server: what it refuses, and what a real PostgreSQL behind it holds
after the project's own tracking and registry code used it (runs, tags, metrics, the champion alias), with the
artifacts under their own root and not in the database."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import urllib.request
import uuid
from urllib.parse import urlsplit

import pytest

from surgvqa import tracking
from surgvqa.params.tracking import URI_VARIABLE
from surgvqa.release import registry
from tests.conftest import REPO, section
from tests.postgres import postgres_bin, postgres_rows

SCRIPT = REPO / "scripts" / "tracking_server.sh"
USAGE = "usage: bash scripts/tracking_server.sh --backend-store-uri postgresql://"
STORE_VARIABLES = ("SURGVQA_BACKEND_STORE_URI", "SURGVQA_ARTIFACTS_DESTINATION")


def _script(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """The script run to its end (a refusal; a server that started instead would time out), without a developer's
    own store variables."""
    inherited = {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}
    return subprocess.run(["bash", str(SCRIPT), *args], env=inherited | (env or {}), capture_output=True, text=True,
                          timeout=60)


def test_refuses_with_usage_without_a_backend_store_or_an_artifact_root(tmp_path):
    artifacts = tmp_path / "artifacts"
    for args in ([], ["--artifacts-destination", str(artifacts)], ["--backend-store-uri"],
                 ["--backend-store-uri", "postgresql://surgvqa@127.0.0.1:5432/surgvqa_mlflow"]):
        done = _script(args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith(USAGE), (args, done.stderr)
    assert not artifacts.exists()


def test_refuses_a_backend_store_that_is_not_postgresql(tmp_path):
    done = _script(["--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-destination",
                    str(tmp_path / "artifacts")])
    assert done.returncode == 2
    assert "must be a postgresql:// URI, got 'sqlite://...'" in done.stderr


def test_refuses_without_psycopg_saying_how_to_install_it(tmp_path):
    # A psycopg that fails to import shadows the installed one (a missing or broken install looks like this to
    # Python); the store comes through the script's variables this time.
    (tmp_path / "shadow" / "psycopg").mkdir(parents=True)
    (tmp_path / "shadow" / "psycopg" / "__init__.py").write_text("raise ImportError('no psycopg in this test')\n")
    done = _script([], env={"PYTHONPATH": str(tmp_path / "shadow"),
                            "SURGVQA_BACKEND_STORE_URI": "postgresql://surgvqa@127.0.0.1:5432/surgvqa_mlflow",
                            "SURGVQA_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts")})
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "psycopg is not importable (ImportError: no psycopg in this test)" in done.stderr
    assert "  .venv/bin/pip install -e '.[postgres]'" in done.stderr


def test_runs_tags_metrics_and_the_champion_alias_live_in_postgresql_and_artifacts_under_their_root(
        postgres_mlflow_server, tmp_path, monkeypatch):
    url, pg_uri = postgres_mlflow_server
    assert urllib.request.urlopen(f"{url}/health", timeout=5).status == 200
    # Bound to 127.0.0.1 alone: another loopback address of this machine (Linux routes all of 127/8 to lo) is
    # refused, where a server on 0.0.0.0 would answer it.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", urlsplit(url).port), timeout=5)
    monkeypatch.delenv(URI_VARIABLE, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # restored after: start_run's set_tracking_uri writes it
    store = section("tracking", uri=url, experiment="team-server")
    adapter_sha256 = hashlib.sha256(b"adapter weights").hexdigest()
    marker = f"report {uuid.uuid4().hex}"  # a string only the artifact holds
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"marker": marker}))

    with tracking.start_run(store, "sequential_stage1", {"approach": "sequential", "stage": "1",
                                                         "adapter_sha256": adapter_sha256},
                            params={"train": {"learning_rate": 0.0001}}) as run:
        tracking.log_metrics({"train_loss": 0.25}, step=3)
        tracking.log_file(report, "reports")
    run_id = run.info.run_id
    client = registry.client_for(url)
    registry.ensure_registered_model(client, "surgvqa-team")
    version = client.create_model_version("surgvqa-team", source=f"{run.info.artifact_uri}/reports", run_id=run_id,
                                          tags={"gate.passed": "true"})
    assert registry.move_champion(client, "surgvqa-team", version.version, None) == (True, "1")

    [stored] = postgres_rows(pg_uri, "SELECT status, artifact_uri FROM runs WHERE run_uuid = %s", (run_id,))
    assert stored["status"] == "FINISHED"
    assert stored["artifact_uri"].startswith("mlflow-artifacts:/")  # the server's artifact proxy, not a client path
    tags = {r["key"]: r["value"] for r in postgres_rows(pg_uri, "SELECT key, value FROM tags WHERE run_uuid = %s",
                                                        (run_id,))}
    assert (tags["kind"], tags["name"], tags["adapter_sha256"]) == ("training", "sequential_stage1", adapter_sha256)
    assert postgres_rows(pg_uri, "SELECT value, step FROM metrics WHERE run_uuid = %s AND key = 'train_loss'",
                         (run_id,)) == [{"value": 0.25, "step": 3}]
    assert postgres_rows(pg_uri, "SELECT alias, version FROM registered_model_aliases WHERE name = %s",
                         ("surgvqa-team",)) == [{"alias": "champion", "version": 1}]

    [uploaded] = (tmp_path / "artifacts").rglob("report.json")
    assert run_id in uploaded.parts and json.loads(uploaded.read_text()) == {"marker": marker}
    dump = subprocess.run([str(postgres_bin() / "pg_dump"), "--dbname", pg_uri], capture_output=True, text=True,
                          check=True).stdout
    assert run_id in dump and marker not in dump
