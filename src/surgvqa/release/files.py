"""Where the release's files live and which adapters a release merges, in one small module: the merge, the
merged evaluation, the gate and promotion name them from here without importing each other's code (so each
DVC stage depends on what it runs)."""

from __future__ import annotations

from pathlib import Path

from surgvqa.io import read_json
from surgvqa.model.lineage import adapter_dir
from surgvqa.names import STAGE_IDS

MANIFEST = "manifest.json"  # in models/merged: routes, serving settings, merged_sha256
EVALUATION = "evaluation.json"  # in reports/release: the merged candidate's metrics and fidelity
PREDICTIONS = "predictions.jsonl"  # in reports/release: its scored answers


def read_manifest(merged_dir: Path) -> dict:
    """models/merged/manifest.json."""
    return read_json(merged_dir / MANIFEST, hint="run `dvc repro merge` first")


def released_adapters(approach: str, models_dir: Path) -> tuple[dict[str, Path], dict[int, str]]:
    """The adapters a release merges, by merged-model name, and which merged model answers each stage.

    Sequential releases one model per stage; curriculum releases its final adapter (the one its evaluation
    scores); baseline its only one."""
    if approach == "sequential":
        return ({f"stage_{s}": adapter_dir(models_dir, approach, s) for s in STAGE_IDS},
                {s: f"stage_{s}" for s in STAGE_IDS})
    stage = STAGE_IDS[-1] if approach == "curriculum" else None
    return {"model": adapter_dir(models_dir, approach, stage)}, {s: "model" for s in STAGE_IDS}
