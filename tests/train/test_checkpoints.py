"""Which checkpoint a rerun resumes: the newest one every process finished writing; a newer one cut short by a kill
is removed, whichever of its files is missing or half-written."""

import json
import random

import numpy as np
import pytest
import torch

from surgvqa.train.approaches import StagePlan
from surgvqa.train.checkpoints import (
    FINGERPRINT_FILE,
    RUN_ID_FILE,
    TRAINER_STATE,
    inputs_fingerprint,
    last_complete_checkpoint,
    resume_point,
)


def _checkpoint(folder, step: int, rng_files: list[str]):
    """A checkpoint folder as the Trainer leaves it: its state, and the RNG state files named."""
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / TRAINER_STATE).write_text(json.dumps({"global_step": step}))
    for name in rng_files:  # what the Trainer's _save_rng_state writes on a CPU machine
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
        torch.save(state, path / name)
    return path


def test_one_process_resumes_the_newest_checkpoint_with_its_state(tmp_path):
    _checkpoint(tmp_path, 2, ["rng_state.pth"])
    newest = _checkpoint(tmp_path, 4, ["rng_state.pth"])
    assert last_complete_checkpoint(tmp_path, 1) == str(newest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_with_two_processes_a_checkpoint_missing_a_ranks_rng_state_is_cut_short(tmp_path, damage):
    complete = _checkpoint(tmp_path, 2, ["rng_state_0.pth", "rng_state_1.pth"])
    # The main process wrote trainer_state.json, the other process's RNG state is absent or half written.
    cut = _checkpoint(tmp_path, 4, ["rng_state_0.pth", "rng_state_1.pth"])
    rng = cut / "rng_state_1.pth"
    if damage == "missing":
        rng.unlink()
    else:
        rng.write_bytes(rng.read_bytes()[: rng.stat().st_size // 2])
    assert last_complete_checkpoint(tmp_path, 2) == str(complete)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]


def test_a_checkpoint_without_trainer_state_is_cut_short_and_none_is_left(tmp_path):
    cut = _checkpoint(tmp_path, 2, ["rng_state.pth"])
    (cut / TRAINER_STATE).write_text('{"global_st')
    assert last_complete_checkpoint(tmp_path, 1) is None
    assert not any(tmp_path.iterdir())


def test_checkpoints_of_another_process_count_are_discarded_not_resumed(tmp_path):
    # A two-process attempt killed after a checkpoint, rerun as one process: each optimizer step's batch differs,
    # so resuming would mix two trainings. The process count is one of the fingerprinted inputs.
    plan = StagePlan(approach="sequential", stage=1, train_stages=(1,), learning_rate=1e-3, parent=None,
                     out_dir=tmp_path / "adapter")
    raw = tmp_path / "raw"
    raw.mkdir()
    fingerprints = {n: inputs_fingerprint(plan, {"content_hash": "base"}, None, "data", raw, {}, n) for n in (1, 2)}
    assert fingerprints[1] != fingerprints[2]
    ckpt = tmp_path / "checkpoints"
    _checkpoint(ckpt, 2, ["rng_state_0.pth", "rng_state_1.pth"])
    (ckpt / FINGERPRINT_FILE).write_text(fingerprints[2])
    (ckpt / RUN_ID_FILE).write_text("run-of-the-two-process-attempt")
    assert resume_point(ckpt, fingerprints[1], 1) == (None, None, "run-of-the-two-process-attempt")
    assert not ckpt.exists()
    # The same process count resumes it.
    _checkpoint(ckpt, 2, ["rng_state_0.pth", "rng_state_1.pth"])
    (ckpt / FINGERPRINT_FILE).write_text(fingerprints[2])
    (ckpt / RUN_ID_FILE).write_text("run-of-the-two-process-attempt")
    resumed = resume_point(ckpt, fingerprints[2], 2)
    assert resumed == (str(ckpt / "checkpoint-2"), "run-of-the-two-process-attempt", None)
