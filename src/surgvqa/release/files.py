"""Where the release's files live, which adapters a release merges, and what identifies a candidate, in one
small module: the merge, the merged evaluation, the gate and promotion use it without importing each other's
code (so each DVC stage depends on what it runs)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json
from surgvqa.model.lineage import LINEAGE_FILE, adapter_dir, check_safetensors, restore_hint, sha256_file
from surgvqa.names import STAGE_IDS

MANIFEST = "manifest.json"  # in models/merged: routes, serving settings, merged_sha256
EVALUATION = "evaluation.json"  # in reports/release: the merged candidate's metrics and fidelity
PREDICTIONS = "predictions.jsonl"  # in reports/release: its scored answers


def read_manifest(merged_dir: Path) -> dict:
    """models/merged/manifest.json."""
    return read_json(merged_dir / MANIFEST, hint=restore_hint(merged_dir, "merge"))


def released_adapters(approach: str, models_dir: Path) -> tuple[dict[str, Path], dict[int, str]]:
    """The adapters a release merges, by merged-model name, and which merged model answers each stage.

    Sequential releases one model per stage; curriculum releases its final adapter (the one its evaluation
    scores); baseline its only one."""
    if approach == "sequential":
        return ({f"stage_{s}": adapter_dir(models_dir, approach, s) for s in STAGE_IDS},
                {s: f"stage_{s}" for s in STAGE_IDS})
    stage = STAGE_IDS[-1] if approach == "curriculum" else None
    return {"model": adapter_dir(models_dir, approach, stage)}, {s: "model" for s in STAGE_IDS}


def sha256_folder(folder: Path) -> str:
    """One hash over every file a merged model loads from (names and bytes, in name order): weights, config,
    tokenizer, processor, chat template. lineage.json is left out: it records this hash."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != LINEAGE_FILE)
    if not files:
        raise SurgvqaError(f"{folder} has no files: {restore_hint(folder.parent, 'merge')}")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(f).encode())
    return digest.hexdigest()


def candidate_hash(manifest: dict) -> str:
    """One hash over everything a manifest releases (approach, mode, route, every merged model's files hash, the
    serving settings; its own `merged_sha256` aside): what the gate and the registry track, so a gate measured
    for anything else is stale."""
    released = {k: v for k, v in manifest.items() if k != "merged_sha256"}
    return hashlib.sha256(json.dumps(released, sort_keys=True).encode()).hexdigest()


def check_candidate(merged_dir: Path, manifest: dict) -> None:
    """The candidate on disk is the one its manifest names: every merged folder hashes to the recorded value and
    the manifest's own content (route, serving settings) to its merged_sha256. A truncated or edited model, or
    an edited manifest, is an error naming it."""
    fix = restore_hint(merged_dir, "merge")
    for name, expected in manifest["models"].items():
        folder = merged_dir / name
        if not folder.is_dir():
            raise SurgvqaError(f"{folder} does not exist, though {merged_dir / MANIFEST} names it: {fix}")
        actual = sha256_folder(folder)
        if actual != expected:
            for weights in sorted(folder.glob("*.safetensors")):  # name the file when one is cut short or corrupted
                check_safetensors(weights, f"the merged model changed after the merge; {fix}")
            raise SurgvqaError(f"{folder}: files hash {actual[:12]}, the manifest says {expected[:12]}: "
                               f"the merged model changed after the merge; {fix}")
    actual = candidate_hash(manifest)
    if actual != manifest["merged_sha256"]:
        raise SurgvqaError(f"{merged_dir / MANIFEST}: its content hashes to {actual[:12]}, not its merged_sha256 "
                           f"{manifest['merged_sha256'][:12]}: the manifest was edited; "
                           f"{restore_hint(merged_dir, 'merge')}")
