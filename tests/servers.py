"""Real servers for tests, on 127.0.0.1: a free port, waiting for an MLflow server to answer, and an MLflow server
over SQLite (tests/postgres.py has the PostgreSQL one)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A server's start (MLflow creates its tables) takes 15 s alone, 45 s on a busy 2-core machine.
SERVER_START_SECONDS = 120


def wait_for_health(url: str, server: subprocess.Popen, log: Path, path: str, name: str) -> None:
    """Return once the server answers url+path with 200; fail with its log when it exits first or never answers."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"{name} exited ({server.returncode}) before answering:\n{log.read_text()}")
        try:
            if urllib.request.urlopen(f"{url}{path}", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{name} did not answer {url}{path} within {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_mlflow_server(root: Path):
    """A real `mlflow server` on 127.0.0.1 with a SQLite store (root/server.db) and its own artifact root
    (root/artifacts), as a `with` block yielding its URL; stopped after. Its output goes to root/server.log."""
    port, log = free_port(), root / "server.log"
    # The job runner (huey workers for MLflow's GenAI jobs, ~240 MB each) is not used here: off, as
    # scripts/tracking_server.sh has it.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as output:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                                 str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                                 "--artifacts-destination", str(root / "artifacts")],
                                stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, proc, log, "/health", "the tracking server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
