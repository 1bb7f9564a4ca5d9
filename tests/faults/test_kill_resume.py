"""SIGKILL mid-run, as a machine going away does it: a real `dvc repro` process group killed during training
(before and after its first checkpoint), and real `merge` and `evaluate` processes killed while they write their
output. Afterwards nothing half-written is taken as complete, a rerun finishes from where it can, and no MLflow
run is left RUNNING."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.model_fixtures import write_params
from tests.scratch import BIN, SCRATCH_LEAKS, file_hashes, run, scratch_project, sh

DVC = [sys.executable, "-m", "dvc"]
STAGE = "train_sequential@1"
ADAPTER = Path("models/sequential/stage_1")
CHECKPOINTS = Path("models/.checkpoints/sequential/stage_1")
KILL_ATTEMPTS = 5  # runs of merge or evaluate to land one kill while their partial folder exists
TRAIN = {"max_steps": 24, "save_steps": 4, "batch_size": 4, "logging_steps": 1}  # a checkpoint every 4 steps


def own_code(project: Path) -> dict:
    """Run the scratch copy's code, not the installed (editable) package, which may change during the test."""
    return {"PYTHONPATH": str(project / "src")}


def start(args, cwd: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """A command in its own process group (so a kill takes DVC and the stage it started), as tests/scratch.run
    would run it. Its output goes to the file `log` (a pipe nobody reads while polling would fill and block it)."""
    env = {**{k: v for k, v in os.environ.items() if k not in SCRATCH_LEAKS}, **(env or {})}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    with log.open("w") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    proc.log = log
    return proc


def killed_mid_run(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> bool:
    """SIGKILL the process group as soon as `ready()` holds: True. False when the process ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no {what} within {timeout} s:\n{proc.log.read_text()[-4000:]}")
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return True


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> str:
    """SIGKILL the process group as soon as `ready()` holds; returns its output. Fails when the process ended
    first (the kill would not have been mid-run)."""
    if not killed_mid_run(proc, ready, what, timeout):
        pytest.fail(f"the process ended before {what}:\n{proc.log.read_text()[-4000:]}")
    return proc.log.read_text()


def complete_checkpoints(folder: Path, processes: int) -> list[str]:
    """The checkpoints whose trainer_state.json (the main process's last file) parses and whose every process's RNG
    state loads: a file that merely exists may still be being written, and under a launcher the other processes
    write theirs without the main one waiting."""
    import torch
    from transformers.trainer_pt_utils import safe_globals

    rng_files = ["rng_state.pth"] if processes == 1 else [f"rng_state_{rank}.pth" for rank in range(processes)]
    done = []
    for path in folder.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text())
            with safe_globals():  # the Trainer's own allow-list for the numpy RNG state
                for name in rng_files:
                    torch.load(path / name, weights_only=True)
        except Exception:  # noqa: BLE001 - missing or half-written: not complete yet
            continue
        done.append(path.name)
    return sorted(done)


def run_statuses(project: Path) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("surgvqa")
    return {r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])}


@pytest.fixture(scope="module")
def killed_training(tiny_project, tmp_path_factory) -> dict:
    """A scratch DVC project holding the tiny project's data and base, whose training stage is killed once before
    its first checkpoint and once after it, then rerun to the end. Returns what each attempt left."""
    project = scratch_project(tmp_path_factory.mktemp("killed") / "project", REPO)
    (project / "data").mkdir()
    shutil.copytree(tiny_project["raw"], project / "data" / "raw")
    shutil.copytree(tiny_project["splits"], project / "data" / "split")
    shutil.copytree(tiny_project["base"], project / "models" / "base")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(TRAIN)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # --single-item: the upstream stages' outputs are copied in, not recorded in this project's dvc.lock.
    repro = [*DVC, "repro", "--single-item", STAGE]
    facts: dict = {"project": project}
    ckpt = project / CHECKPOINTS
    logs = tmp_path_factory.mktemp("killed_logs")

    # 1. Killed before any checkpoint: the MLflow run exists and is RUNNING, nothing is saved yet.
    proc = start(repro, project, logs / "first.log", own_code(project))
    kill_when(proc, lambda: (ckpt / "mlflow_run_id").is_file(), "the training run started")
    facts["before"] = {"run": (ckpt / "mlflow_run_id").read_text(), "checkpoints": complete_checkpoints(ckpt, 1),
                       "adapter": (project / ADAPTER).exists(), "statuses": run_statuses(project)}

    # 2. Killed right after its first checkpoint is complete.
    proc = start(repro, project, logs / "second.log", own_code(project))
    facts["second_log"] = kill_when(proc, lambda: bool(complete_checkpoints(ckpt, 1)), "a complete checkpoint")
    facts["after"] = {"run": (ckpt / "mlflow_run_id").read_text(), "checkpoints": complete_checkpoints(ckpt, 1),
                      "adapter": (project / ADAPTER).exists(), "statuses": run_statuses(project)}
    # A checkpoint the kill cut short (the Trainer writes trainer_state.json last), newer than the complete ones.
    last = ckpt / facts["after"]["checkpoints"][-1]
    cut = ckpt / "checkpoint-23"
    shutil.rmtree(cut, ignore_errors=True)
    cut.mkdir()
    weights = (last / "adapter_model.safetensors").read_bytes()
    (cut / "adapter_model.safetensors").write_bytes(weights[: len(weights) // 2])

    # 3. Rerun to the end.
    facts["resume_log"] = sh(repro, project, own_code(project))
    facts["statuses"] = run_statuses(project)
    facts["adapter_bytes"] = file_hashes(project / ADAPTER)
    return facts


@pytest.mark.slow
def test_a_killed_training_stage_resumes_from_its_last_complete_checkpoint_and_passes_verification(killed_training):
    project, before, after = killed_training["project"], killed_training["before"], killed_training["after"]
    assert before["checkpoints"] == [] and not before["adapter"]
    assert after["checkpoints"] and not after["adapter"]  # the kill came after the checkpoint, before the adapter
    log = killed_training["resume_log"]
    assert "checkpoint-23: a checkpoint cut short before all its files were written" in log
    assert not (project / CHECKPOINTS).exists()
    assert "result: PASSED" in sh(["surgvqa", "verify-adapter", str(ADAPTER)], project, own_code(project))
    lineage = json.loads((project / ADAPTER / "lineage.json").read_text())
    assert lineage["global_step"] == TRAIN["max_steps"]
    status = sh([*DVC, "status", STAGE], project, own_code(project))
    assert "Data and pipelines are up to date." in status, status  # dvc.lock records the finished stage


@pytest.mark.slow
def test_no_killed_attempt_leaves_its_mlflow_run_running(killed_training):
    from mlflow.tracking import MlflowClient

    before, after, statuses = killed_training["before"], killed_training["after"], killed_training["statuses"]
    # Right after each kill the attempt's run is RUNNING: only the next attempt can end it.
    assert before["statuses"] == {before["run"]: "RUNNING"}
    assert after["statuses"][after["run"]] == "RUNNING"
    # The attempt killed before its first checkpoint has nothing to resume: the next attempt marked it KILLED.
    assert after["statuses"][before["run"]] == "KILLED" and after["run"] != before["run"]
    # The attempt killed after a checkpoint is the run that resumed and finished.
    assert statuses == {before["run"]: "KILLED", after["run"]: "FINISHED"}
    client = MlflowClient(tracking_uri=f"sqlite:///{killed_training['project'] / 'mlflow.db'}")
    tags = client.get_run(after["run"]).data.tags
    assert tags["resumed_from"] == after["checkpoints"][-1]
    assert tags["adapter_sha256"] == killed_training["adapter_bytes"]["adapter_model.safetensors"]


@pytest.mark.slow
def test_a_dvc_cache_miss_names_the_folder_and_the_fix(killed_training, tmp_path):
    """The adapter is gone from the workspace and from the DVC cache (a `dvc pull` from a remote that lacks it
    ends the same way): DVC says it cannot check it out, and every command of ours that needs it names the folder,
    `dvc pull` and the `dvc repro` stage that rebuilds it. (On a copy without the cache: the fixture stays whole.)"""
    source = killed_training["project"]
    project = tmp_path / "project"
    shutil.copytree(source, project, symlinks=True,
                    ignore=lambda folder, names: ["cache"] if Path(folder) == source / ".dvc" else [])
    assert not (project / ".dvc" / "cache").exists()
    shutil.rmtree(project / ADAPTER)
    checkout = run([*DVC, "checkout", str(ADAPTER)], project)
    assert checkout.returncode != 0 and str(ADAPTER) in checkout.stdout + checkout.stderr
    done = run(["surgvqa", "verify-adapter", str(ADAPTER)], project, own_code(project))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (f"error: {ADAPTER} does not exist: rerun `dvc repro {STAGE}` or restore it with `dvc checkout "
            f"{ADAPTER}` (`dvc pull {ADAPTER}` when the DVC cache lacks it)") in done.stderr
    assert STAGE in run([*DVC, "status", STAGE], project).stdout  # and `dvc repro` sees it has to rebuild it


@pytest.mark.slow
def test_killed_merge_and_evaluate_leave_the_old_complete_output_and_rerun_to_the_same_bytes(tiny_release,
                                                                                              tmp_path):
    """`surgvqa merge` and `evaluate` run outside DVC (which would have deleted their outputs first): killed while
    they write, the previous complete output stays as it was; the rerun gives the bytes of an unkilled run."""
    params = write_params(tiny_release["params"], tmp_path / "params.yaml")
    merged, reports = tmp_path / "merged", tmp_path / "eval"
    shutil.copytree(tiny_release["merged"], merged)  # the unkilled run's output, with the same inputs and params
    shutil.copytree(tiny_release["eval"], reports)
    merged_before, reports_before = file_hashes(merged), file_hashes(reports / "baseline")
    py = [sys.executable, "-m"]
    merge = [*py, "surgvqa.release.merge", "--params", str(params), "--models", str(tiny_release["models"]),
             "--splits", str(tiny_release["splits"]), "--stage-table", str(tiny_release["stage_table"]),
             "--out", str(merged)]
    evaluate = [*py, "surgvqa.evaluate.evaluate", "--params", str(params), "--approach", "baseline",
                "--models", str(tiny_release["models"]), "--splits", str(tiny_release["splits"]),
                "--raw", str(tiny_release["raw"]), "--stage-table", str(tiny_release["stage_table"]),
                "--out", str(reports)]
    for command, output, before, partial in ((merge, merged, merged_before, tmp_path / "merged.partial"),
                                             (evaluate, reports / "baseline", reports_before,
                                              reports / ".baseline.partial")):
        # The partial folder lives for a short while only (evaluate writes a few small files into it): a poll can
        # miss it, or kill just after its rename. Such an attempt ran to the end (same bytes); try again, boundedly.
        for attempt in range(KILL_ATTEMPTS):
            proc = start(command, tmp_path, tmp_path / f"{partial.name}.{attempt}.log")
            if killed_mid_run(proc, partial.exists, f"{partial} being written") and partial.exists():
                break
            assert proc.wait(timeout=60) in (0, -signal.SIGKILL), proc.log.read_text()[-4000:]
            assert file_hashes(output) == before
        else:
            pytest.fail(f"no kill landed while {partial} existed in {KILL_ATTEMPTS} attempts")
        assert file_hashes(output) == before  # half-written beside, the old one untouched
        sh(command, tmp_path)
        assert file_hashes(output) == before and not partial.exists()
