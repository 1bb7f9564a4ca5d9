"""Stage `split`: a deterministic image-level train/val/test split, so no image is in two splits.

Kvasir-VQA has no official split and about nine questions per image; splitting rows instead of images would
put the same picture in train and test and inflate every test score.
"""

from __future__ import annotations

import random
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, write_json, write_jsonl
from surgvqa.params import SplitParams

SPLITS = ("train", "val", "test")


def assign_images(img_ids: list[str], p: SplitParams) -> dict[str, str]:
    """img_id -> split; depends only on the set of ids, the ratios and the seed (not on row order)."""
    ids = sorted(set(img_ids))
    random.Random(p.seed).shuffle(ids)
    # Cumulative cut points, so rounding never shifts images between val and test unevenly.
    n_train = round(len(ids) * p.train)
    n_val = round(len(ids) * (p.train + p.val)) - n_train
    if len(ids) >= 3 and min(p.train, p.val, p.test) > 0:
        # Tiny data: keep every requested split non-empty rather than silently dropping one.
        n_train = min(max(n_train, 1), len(ids) - 2)
        n_val = min(max(n_val, 1), len(ids) - n_train - 1)
    return {img: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, img in enumerate(ids)}


def split_rows(rows: list[dict], p: SplitParams) -> dict[str, list[dict]]:
    """The CXRTrek rows of each split, in their original order."""
    where = assign_images([r["img_id"] for r in rows], p)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in rows:
        out[where[r["img_id"]]].append(r)
    return out


def run(cxrtrek_path: Path, out_dir: Path, report_path: Path, p: SplitParams) -> dict:
    """Entry point: write train/val/test.jsonl and a report of images, rows and stage counts per split."""
    rows = read_jsonl(Path(cxrtrek_path))
    if not rows:
        raise SurgvqaError(f"{cxrtrek_path} holds no QA rows: nothing to split")
    parts = split_rows(rows, p)
    report = {}
    for name, part in parts.items():
        write_jsonl(Path(out_dir) / f"{name}.jsonl", part)
        report[name] = {"images": len({r["img_id"] for r in part}), "rows": len(part),
                        **{f"stage_{s}_rows": sum(1 for r in part if r["stage_id"] == s) for s in (1, 2, 3)}}
    write_json(Path(report_path), report)
    return report
