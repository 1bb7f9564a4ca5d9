"""Shared test helpers: tiny raw layouts built in tmp_path from the sample's own drawings."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

import pytest

from surgvqa.data.sample import draw_scene
from surgvqa.data.scene import sample_scene
from tests.servers import running_mlflow_server

REPO = Path(__file__).resolve().parents[1]
# No test may reach the network: DVC's usage report and the Hub stay off in every subprocess too.
os.environ.update(DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def repo_params():
    """The project's params.yaml, loaded and checked: the one home of every value."""
    from surgvqa.params.schema import load_params

    return load_params(REPO / "params.yaml")


def section(name: str, **changes):
    """One section of the project's params, with `changes` (checked again, as a params.yaml edit would be)."""
    return dataclasses.replace(getattr(repo_params(), name), **changes)


def jpeg_bytes(index: int = 0) -> bytes:
    """A real JPEG: the sample's drawing of image `index` (seed 0)."""
    buf = io.BytesIO()
    draw_scene(sample_scene(0, index)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_raw(raw_dir: Path, rows: list[tuple[str, str, str, str]], images: dict[str, bytes],
              header: tuple[str, ...] = ("source", "question", "answer", "img_id")) -> Path:
    """A raw layout with the given metadata rows and image files; returns raw_dir."""
    (raw_dir / "images").mkdir(parents=True, exist_ok=True)
    with (raw_dir / "metadata.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    for img_id, data in images.items():
        (raw_dir / "images" / f"{img_id}.jpg").write_bytes(data)
    return raw_dir


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 over tmp_path (see running_mlflow_server)."""
    with running_mlflow_server(tmp_path) as url:
        yield url


from tests.model_fixtures import tiny_adapters, tiny_project, tiny_release  # noqa: E402,F401 - session fixtures
from tests.postgres import postgres_mlflow_server  # noqa: E402,F401 - a fixture
