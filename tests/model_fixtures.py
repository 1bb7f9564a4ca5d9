"""A tiny project for model and training tests: a small grounded sample through the data stages, and a tiny
Qwen2-VL base built from it (seconds, offline). Built once per test session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from surgvqa.params.schema import Params, load_params
from surgvqa.params.typed import sections_of

REPO = Path(__file__).resolve().parents[1]


def sections(params: Params, fn) -> dict:
    """The params sections a stage function declares, taken from `params`, to call it as its entry point does."""
    return {name: getattr(params, name) for name in sections_of(fn)}


def write_params(params: Params, path: Path) -> Path:
    """`params` as a params.yaml at `path`, for a stage started as a command (its entry point reads one)."""
    path.write_text(yaml.safe_dump(dataclasses.asdict(params), sort_keys=False), encoding="utf-8")
    return path


def tiny_params(tmp: Path) -> Params:
    """The repo's params with a smaller tiny model, short training and an MLflow store in tmp."""
    p = load_params(REPO / "params.yaml")
    p.model.tiny = dataclasses.replace(p.model.tiny, hidden_size=32, intermediate_size=64, vision_dim=32,
                                       vocab_size=600, pretrain_epochs=2.0)
    p.model.image_pixels = 56 * 56
    p.train = dataclasses.replace(p.train, max_steps=4, batch_size=4, logging_steps=1, save_steps=2)
    p.tracking = dataclasses.replace(p.tracking, uri=f"sqlite:///{tmp / 'mlflow.db'}")
    return p


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> dict:
    """{'root', 'raw', 'splits', 'base', 'params'}: 24 sample images split and a tiny base built from them."""
    from surgvqa.data import categorize, convert, ingest, split
    from surgvqa.data.sample import make_sample
    from surgvqa.model import base

    root = tmp_path_factory.mktemp("tiny_project")
    params = tiny_params(root)
    raw = root / "raw"
    make_sample(raw, images=24, seed=1)
    ingest.run(raw, root / "ingested", root / "r" / "ingest.json", params.ingest)
    categorize.run(root / "ingested" / "qa.jsonl", root / "categorized", root / "r" / "cat.json", params.categorize)
    convert.run(root / "categorized" / "inline.jsonl", root / "cxrtrek", root / "r" / "convert.json", params.convert)
    split.run(root / "cxrtrek" / "cxrtrek.jsonl", root / "split", root / "r" / "split.json", params.split)
    base.run(root / "models" / "base", root / "split" / "train.jsonl", raw, root / "r" / "base.json",
             **sections(params, base.run))
    return {"root": root, "raw": raw, "splits": root / "split", "base": root / "models" / "base", "params": params}


@pytest.fixture(scope="session")
def tiny_adapters(tiny_project) -> Path:
    """All seven adapters of the three approaches, trained a few steps each, beside the tiny base."""
    from surgvqa.train import train

    project, models = tiny_project, tiny_project["base"].parent
    for approach, stage in [("sequential", 1), ("sequential", 2), ("sequential", 3), ("curriculum", 1),
                            ("curriculum", 2), ("curriculum", 3), ("baseline", None)]:
        train.run(approach, stage, project["splits"], project["raw"], project["base"], models, models / ".checkpoints",
                  **sections(project["params"], train.run))
    return models


@pytest.fixture(scope="session")
def tiny_release(tiny_project, tiny_adapters) -> dict:
    """The baseline released from the tiny adapters: merged (float32), its unmerged adapters evaluated in the
    release's mode, and the merged candidate evaluated beside them. {'merged', 'release', 'eval', 'params', ...}"""
    from surgvqa.evaluate import evaluate
    from surgvqa.params.release import ReleaseParams
    from surgvqa.release import evaluate_merged, merge

    project, root = tiny_project, tiny_project["root"]
    params = dataclasses.replace(project["params"], release=ReleaseParams("baseline", "independent"),
                                 evaluate=dataclasses.replace(project["params"].evaluate, modes=["independent"]))
    stage_table = root / "categorized" / "question_stages.csv"
    merged = root / "release" / "merged"
    merge.run(tiny_adapters, project["splits"], stage_table, merged, **sections(params, merge.run))
    evaluate.run("baseline", tiny_adapters, project["splits"], project["raw"], stage_table,
                 root / "release" / "eval" / "baseline", **sections(params, evaluate.run))
    evaluate_merged.run(merged, tiny_adapters, project["splits"], project["raw"], root / "release" / "eval",
                        root / "release" / "reports", **sections(params, evaluate_merged.run))
    return {"merged": merged, "release": root / "release" / "reports", "eval": root / "release" / "eval",
            "models": tiny_adapters, "stage_table": stage_table, "params": params, **{
                k: project[k] for k in ("root", "raw", "splits")}}
