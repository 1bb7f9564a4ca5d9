"""Lineage records: what an adapter or base was made from, with content hashes so a parent can be checked.

A lineage record is part of a versioned output, so it holds only what the inputs determine (hashes, params,
data, the losses the weights give): the same inputs give the same bytes, and DVC sees nothing change. Facts of
one run (its MLflow run id, git commit, whether it resumed, the running training loss) go to the MLflow run,
which carries the adapter's weight hash as the tag `adapter_sha256` (tracking.find_adapter_run).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json, write_json

LINEAGE_FILE = "lineage.json"
BASE_FILE = "base.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
REQUIRED_KEYS = ("approach", "stage", "train_stages", "base", "quantization", "parent", "data", "params",
                 "adapter_sha256", "val_loss_by_stage", "continuity")


def adapter_dir(models_dir: Path, approach: str, stage: int | None) -> Path:
    """Where an approach's adapter for a stage lives (baseline: one adapter, no stage)."""
    return models_dir / approach if stage is None else models_dir / approach / f"stage_{stage}"


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_weights(model_dir: Path) -> str:
    """One hash over every *.safetensors file of a directory (names and bytes, in name order)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise SurgvqaError(f"{model_dir} has no *.safetensors weights (only safetensors are loaded)")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def git_commit(cwd: Path | None = None) -> dict:
    """The commit the code ran at, and whether the work tree had uncommitted changes (None outside git)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def write_lineage(adapter_dir: Path, record: dict) -> None:
    """Write lineage.json beside the adapter weights; every required key must be present."""
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise SurgvqaError(f"lineage record for {adapter_dir} lacks {missing}")
    write_json(adapter_dir / LINEAGE_FILE, record)


def read_lineage(adapter_dir: Path) -> dict:
    """The lineage record of an adapter directory."""
    return read_json(adapter_dir / LINEAGE_FILE, hint="run `dvc repro` (the training stage of this adapter) first")
