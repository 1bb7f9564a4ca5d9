"""Stage `split`: a deterministic image-level train/val/test split, so no image is in two splits.

Kvasir-VQA has no official split and about nine questions per image; splitting rows instead of images would
put the same picture in train and test and inflate every test score. A row that convert would not have written
(qa_record.py's checks, a stage id outside 1-3 or a stage name that is not its id's) is refused before any
split is written: the error names the file and lines (`path:line`) and the reasons, the report counts and lists them.
"""

from __future__ import annotations

import random
from pathlib import Path

from surgvqa import entry
from surgvqa.data.qa_record import Problem, qa_problem, refuse_bad_records
from surgvqa.errors import SurgvqaError
from surgvqa.io import numbered_jsonl, write_json, write_jsonl
from surgvqa.names import SPLITS, STAGE_IDS, STAGE_NAMES
from surgvqa.params.split import SplitParams


def row_problem(row: dict) -> Problem:
    """('', '') for a CXRTrek row as convert writes it, else (reason, detail)."""
    stage = row.get("stage_id")
    if type(stage) is not int or stage not in STAGE_IDS:  # `type`: True == 1, but a boolean is no stage
        return "stage_out_of_range", f"stage_id {stage!r} is not one of {list(STAGE_IDS)}"
    if row.get("stage_name") != STAGE_NAMES[stage]:
        return "bad_stage_name", f"stage_name {row.get('stage_name')!r} is not {STAGE_NAMES[stage]!r}"
    return qa_problem(row)


def assign_images(img_ids: list[str], ratios: SplitParams) -> dict[str, str]:
    """img_id -> split; depends only on the set of ids, the ratios and the seed (not on row order)."""
    ids = sorted(set(img_ids))
    random.Random(ratios.seed).shuffle(ids)
    # Cumulative cut points, so rounding never shifts images between val and test unevenly.
    n_train = round(len(ids) * ratios.train)
    n_val = round(len(ids) * (ratios.train + ratios.val)) - n_train
    if len(ids) >= 3 and min(ratios.train, ratios.val, ratios.test) > 0:
        # Tiny data: keep every requested split non-empty rather than silently dropping one.
        n_train = min(max(n_train, 1), len(ids) - 2)
        n_val = min(max(n_val, 1), len(ids) - n_train - 1)
    return {img: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, img in enumerate(ids)}


def split_rows(rows: list[dict], ratios: SplitParams) -> dict[str, list[dict]]:
    """The CXRTrek rows of each split, in their original order."""
    where = assign_images([r["img_id"] for r in rows], ratios)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in rows:
        out[where[r["img_id"]]].append(r)
    return out


def run(cxrtrek_path: Path, out_dir: Path, report_path: Path, split: SplitParams) -> dict:
    """The stage: write train/val/test.jsonl and a report of images, rows and stage counts per split."""
    numbered = list(numbered_jsonl(Path(cxrtrek_path)))
    if not numbered:
        raise SurgvqaError(f"{cxrtrek_path} holds no QA rows: nothing to split")
    refuse_bad_records(Path(cxrtrek_path), numbered, row_problem, "split", Path(report_path))
    rows = [row for _, row in numbered]
    parts = split_rows(rows, split)
    report = {}
    for name, part in parts.items():
        write_jsonl(Path(out_dir) / f"{name}.jsonl", part)
        report[name] = {"images": len({r["img_id"] for r in part}), "rows": len(part),
                        **{f"stage_{s}_rows": sum(1 for r in part if r["stage_id"] == s) for s in STAGE_IDS}}
    write_json(Path(report_path), report)
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.data.split` (dvc.yaml) and `surgvqa split`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--cxrtrek", type=Path, default=Path("data/cxrtrek/cxrtrek.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("data/split"))
    parser.add_argument("--report", type=Path, default=Path("reports/split.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, cxrtrek_path=args.cxrtrek, out_dir=args.out, report_path=args.report)


def _summary(report: dict) -> None:
    print("split: " + ", ".join(f"{k} {v['images']} images / {v['rows']} rows" for k, v in report.items()))


if __name__ == "__main__":
    raise SystemExit(main())
