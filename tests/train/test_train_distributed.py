"""A training stage as two real CPU processes (torchrun, gloo), as `launch.command: torchrun ...` starts it: the data
is sharded (half the optimizer steps of one process), the adapter has the usual layout and lineage, one MLflow run
is logged by the main process only, and a SIGKILL after a checkpoint resumes in that same run."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from surgvqa.io import read_jsonl
from surgvqa.model.lineage import ADAPTER_WEIGHTS, LINEAGE_FILE, check_adapter_files, sha256_file
from surgvqa.train.verify import verify_adapter
from tests.conftest import REPO
from tests.faults.test_kill_resume import complete_checkpoints, start
from tests.model_fixtures import write_params
from tests.servers import free_port

TRAIN = {"max_steps": -1, "epochs": 1.0, "batch_size": 4, "save_steps": 2, "logging_steps": 1}
PROCESSES = 2


def torchrun(port: int, *stage_args: str) -> list[str]:
    """The command `launch.command: torchrun --nproc_per_node 2` gives dvc.yaml, with this environment's Python."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(PROCESSES),
            "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "surgvqa.train.train", *stage_args]


def process_tree(pid: int) -> list[int]:
    """pid and every process descended from it (torchrun starts each worker in a session of its own, so killing
    the launcher's process group would leave the workers running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def kill_all_when(proc, ready, what: str, timeout: float = 300) -> None:
    """SIGKILL the launcher and both workers at once as soon as `ready()` holds, as a machine going away would."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the training ended before {what}:\n{proc.log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)
    tree = process_tree(proc.pid)
    assert len(tree) >= 1 + PROCESSES, f"expected the launcher and {PROCESSES} workers, found {tree}"
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in tree[1:]):
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


@pytest.fixture(scope="module")
def two_process_training(tiny_project, tmp_path_factory) -> dict:
    """sequential stage 1 trained by two processes: killed once right after its first complete checkpoint, then
    rerun to the end. Returns the paths and both attempts' logs."""
    root = tmp_path_factory.mktemp("ddp")
    params = dataclasses.replace(tiny_project["params"], train=dataclasses.replace(tiny_project["params"].train,
                                                                                   **TRAIN))
    params.tracking = dataclasses.replace(params.tracking, uri=f"sqlite:///{root / 'mlflow.db'}")
    write_params(params, root / "params.yaml")
    models = root / "models"
    args = ["--params", str(root / "params.yaml"), "--approach", "sequential", "--stage", "1", "--splits",
            str(tiny_project["splits"]), "--raw", str(tiny_project["raw"]), "--base", str(tiny_project["base"]),
            "--models", str(models), "--checkpoints", str(models / ".checkpoints")]
    # A copy of the code: the resume check hashes it, and the installed (editable) package may change meanwhile.
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(root / "src")}
    checkpoints = models / ".checkpoints" / "sequential" / "stage_1"

    first = start(torchrun(free_port(), *args), root, root / "first.log", env)
    kill_all_when(first, lambda: bool(complete_checkpoints(checkpoints, PROCESSES)), "a complete checkpoint")
    assert "train sequential/stage_1:" not in first.log.read_text()  # killed mid-run, not after the end
    killed = {"checkpoints": complete_checkpoints(checkpoints, PROCESSES),
              "run": (checkpoints / "mlflow_run_id").read_text()}
    again = start(torchrun(free_port(), *args), root, root / "again.log", env)
    again.wait(timeout=600)
    log = again.log.read_text()
    assert again.returncode == 0, log[-6000:]
    return {"root": root, "params": params, "adapter": models / "sequential" / "stage_1", "killed": killed,
            "log": log, "checkpoints": checkpoints}


@pytest.mark.slow
def test_two_processes_shard_the_rows_and_write_the_usual_adapter(tiny_project, two_process_training):
    adapter = two_process_training["adapter"]
    assert sorted(p.name for p in adapter.iterdir()) == ["README.md", "adapter_config.json", ADAPTER_WEIGHTS,
                                                         LINEAGE_FILE]
    lineage = check_adapter_files(adapter)  # the weights are the bytes the lineage records
    rows = sum(r["stage_id"] == 1 for r in read_jsonl(tiny_project["splits"] / "train.jsonl"))
    assert lineage["processes"] == PROCESSES and lineage["data"]["rows"] == rows
    # Each process takes half the rows (the sampler pads the shorter share), so one epoch is half the steps.
    assert lineage["global_step"] == math.ceil(math.ceil(rows / PROCESSES) / TRAIN["batch_size"])
    assert lineage["global_step"] < math.ceil(rows / TRAIN["batch_size"])
    assert lineage["adapter_sha256"] == sha256_file(adapter / ADAPTER_WEIGHTS) and lineage["parent"] is None
    assert verify_adapter(adapter, two_process_training["params"].model).ok
    assert not two_process_training["checkpoints"].exists()  # cleaned up once the adapter was saved
    log = two_process_training["log"]
    assert log.count("train sequential/stage_1:") == 1  # the summary comes from the main process only


@pytest.mark.slow
def test_one_mlflow_run_from_the_main_process_resumed_after_a_kill(two_process_training):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=two_process_training["params"].tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("surgvqa").experiment_id])
    killed = two_process_training["killed"]
    assert [r.info.run_id for r in runs] == [killed["run"]] and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.tags["resumed_from"] == killed["checkpoints"][-1]
    assert run.data.tags["adapter_sha256"] == sha256_file(two_process_training["adapter"] / ADAPTER_WEIGHTS)
    assert json.loads(run.data.params["processes"]) == PROCESSES
    # Every step up to the resumed checkpoint logged once: a second process logging too would repeat each one.
    # (A step after it may have been logged by the killed attempt too, before the kill, and again on resume.)
    resumed_at = int(killed["checkpoints"][-1].split("-")[1])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    early = [s for s in steps if s <= resumed_at]
    assert early == sorted(set(early)) == list(range(1, resumed_at + 1))
    lineage = json.loads((two_process_training["adapter"] / LINEAGE_FILE).read_text())
    assert max(steps) == lineage["global_step"]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert f"adapter/{ADAPTER_WEIGHTS}" in logged and f"adapter/{LINEAGE_FILE}" in logged
