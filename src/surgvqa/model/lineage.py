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
from surgvqa.names import APPROACHES, STAGE_IDS

LINEAGE_FILE = "lineage.json"
BASE_FILE = "base.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
REQUIRED_KEYS = ("approach", "stage", "train_stages", "base", "quantization", "parent", "data", "params",
                 "adapter_sha256", "val_loss_by_stage", "continuity")


def adapter_dir(models_dir: Path, approach: str, stage: int | None) -> Path:
    """Where an approach's adapter for a stage lives (baseline: one adapter, no stage)."""
    return models_dir / approach if stage is None else models_dir / approach / f"stage_{stage}"


def training_stage(adapter: Path) -> str:
    """The dvc.yaml stage that writes an adapter folder (models/sequential/stage_1 -> train_sequential@1,
    models/baseline -> train_baseline), read off the layout adapter_dir gives."""
    adapter = Path(adapter)
    for approach in APPROACHES:
        if adapter.name == approach:
            return f"train_{approach}"
        for stage in STAGE_IDS:
            if adapter == adapter_dir(adapter.parent.parent, approach, stage):
                return f"train_{approach}@{stage}"
    return "the training stage that writes it"


def restore_hint(folder: Path, stage: str | None = None) -> str:
    """The fix for a missing or damaged output folder of a DVC stage (`stage`; None: the training stage of an
    adapter folder). Every error about a model file on disk ends with it."""
    return (f"rerun `dvc repro {stage or training_stage(folder)}` or restore it with `dvc checkout {folder}` "
            f"(`dvc pull {folder}` when the DVC cache lacks it)")


def check_safetensors(path: Path, fix: str) -> list[str]:
    """The tensor names of a safetensors file whose header and size check out; a missing, truncated or otherwise
    unreadable file is an error naming it and `fix`. Weights are only ever loaded from safetensors, never pickle."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise SurgvqaError(f"{path} does not exist: {fix}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as e:
        raise SurgvqaError(f"{path} is not a readable safetensors file ({e}; truncated or corrupted): {fix}") from e


def check_adapter_weights(adapter: Path, lineage: dict) -> tuple[list[str], str | None]:
    """(tensor names, None) when an adapter's weights open cleanly and hash to lineage.adapter_sha256; (tensor
    names, what is wrong) when they open but hash otherwise. Unreadable weights are an error naming the file."""
    weights = adapter / ADAPTER_WEIGHTS
    keys = check_safetensors(weights, restore_hint(adapter))
    actual, recorded = sha256_file(weights), lineage.get("adapter_sha256")
    if actual == recorded:
        return keys, None
    return keys, (f"{weights} hashes {actual[:12]}, but {adapter / LINEAGE_FILE} records {str(recorded)[:12]}: the "
                  f"file changed after training (edited, replaced or corrupted); {restore_hint(adapter)}")


def check_adapter_files(adapter: Path) -> dict:
    """The lineage of an adapter folder whose files are the ones its training wrote: a PEFT config and readable
    safetensors weights hashing to lineage.adapter_sha256. Errors name the file and the fix."""
    fix = restore_hint(adapter)
    if not adapter.is_dir():
        raise SurgvqaError(f"adapter folder {adapter} does not exist: {fix}")
    if not (adapter / ADAPTER_CONFIG).is_file():
        raise SurgvqaError(f"{adapter / ADAPTER_CONFIG} does not exist (not a PEFT adapter folder): {fix}")
    lineage = read_lineage(adapter)
    _, problem = check_adapter_weights(adapter, lineage)
    if problem:
        raise SurgvqaError(problem)
    return lineage


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
    return read_json(adapter_dir / LINEAGE_FILE, hint=restore_hint(adapter_dir))
