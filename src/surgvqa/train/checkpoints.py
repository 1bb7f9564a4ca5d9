"""Training checkpoints, kept outside the DVC output so an interrupted stage can resume: which checkpoint is
complete, whether it was made from the same inputs (a fingerprint file beside them), and the MLflow run of an
attempt that is discarded rather than resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

from surgvqa.data.raw import IMAGES
from surgvqa.params.tracking import TrackingParams
from surgvqa.train.approaches import StagePlan

RUN_ID_FILE = "mlflow_run_id"
FINGERPRINT_FILE = "inputs.sha256"
TRAINER_STATE = "trainer_state.json"  # the last file the main process writes into a checkpoint


def _code_and_images(raw_dir: Path) -> str:
    """A hash of the package's code and of the image files' names and sizes (cheap on the real dataset)."""
    import surgvqa

    digest = hashlib.sha256()
    package = Path(surgvqa.__file__).parent
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".csv") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    images = raw_dir / IMAGES
    for path in sorted(images.iterdir()) if images.is_dir() else ():
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
    return digest.hexdigest()


def inputs_fingerprint(plan: StagePlan, base: dict, parent: dict | None, data_sha256: str, raw_dir: Path,
                       sections: dict, processes: int) -> str:
    """A hash of everything the stage's result depends on (plan, base, parent, data, images, code, params, the
    process count), so a checkpoint is resumed only by a run of the same inputs."""
    blob = {"plan": [plan.approach, plan.stage, list(plan.train_stages), plan.learning_rate, plan.replay_share],
            "base": base["content_hash"], "parent": parent["adapter_sha256"] if parent else None,
            "data": data_sha256, "code_and_images": _code_and_images(raw_dir),
            "sections": {k: dataclasses.asdict(v) for k, v in sections.items()}, "processes": processes}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _rng_files(processes: int) -> list[str]:
    """The RNG state files the Trainer writes into a checkpoint: one per process under a launcher."""
    return ["rng_state.pth"] if processes == 1 else [f"rng_state_{rank}.pth" for rank in range(processes)]


def _is_complete(checkpoint: Path, processes: int) -> bool:
    """The main process writes trainer_state.json after its own files but without waiting for the others, which
    each write their RNG state: a checkpoint is complete when all of them can be read back."""
    import pickle

    import torch
    from transformers.trainer_pt_utils import safe_globals

    try:
        json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
        with safe_globals():  # as the Trainer loads them on resume: weights only, numpy's RNG state allowed
            for name in _rng_files(processes):
                torch.load(checkpoint / name, weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError):  # missing, or cut short
        return False
    return True


def last_complete_checkpoint(ckpt_dir: Path, processes: int) -> str | None:
    """The newest checkpoint every process finished writing. A newer folder missing a readable trainer_state.json
    or RNG state was cut short by a kill; it is removed (the Trainer would pick it and fail to load it, or resume
    without the RNG state and give other bytes)."""
    steps = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    for _, path in reversed(steps):
        if _is_complete(path, processes):
            return str(path)
        print(f"train: removing {path}: a checkpoint cut short before all its files were written")
        shutil.rmtree(path)
    return None


def resume_point(ckpt_dir: Path, fingerprint: str, processes: int) -> tuple[str | None, str | None, str | None]:
    """(checkpoint, its MLflow run id, None) to resume from, or (None, None, the discarded attempt's MLflow run id)
    after clearing checkpoints of other inputs or of an attempt killed before its first checkpoint; the caller marks
    that run KILLED, since nothing else would ever end it."""
    if not ckpt_dir.is_dir():
        return None, None, None
    run_id_file = ckpt_dir / RUN_ID_FILE
    run_id = (run_id_file.read_text().strip() or None) if run_id_file.is_file() else None
    same_inputs = (ckpt_dir / FINGERPRINT_FILE).is_file() and (ckpt_dir / FINGERPRINT_FILE).read_text() == fingerprint
    resume = last_complete_checkpoint(ckpt_dir, processes) if same_inputs else None
    if not resume:
        if not same_inputs:
            print(f"train: discarding checkpoints in {ckpt_dir}: they were made from other inputs")
        shutil.rmtree(ckpt_dir)  # other inputs, or a run that died before its first checkpoint
        return None, None, run_id
    return resume, run_id, None


def end_abandoned_run(tracking: TrackingParams, run_id: str) -> str | None:
    """Mark the MLflow run of an attempt that was killed and is not resumed KILLED, if it is still RUNNING;
    returns the status it had (None when the store does not know it: another store, or deleted)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.resolved_uri())
    try:
        status = client.get_run(run_id).info.status
    except MlflowException:
        print(f"train: the interrupted attempt's MLflow run {run_id} is not in {tracking.resolved_uri()}")
        return None
    if status == "RUNNING":
        client.set_terminated(run_id, "KILLED")
        print(f"train: MLflow run {run_id} of an interrupted attempt (no usable checkpoint) marked KILLED")
    return status
