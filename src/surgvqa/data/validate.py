"""Stage `validate`: a Great Expectations suite over the train/val/test splits.

Three small frames are validated: the QA rows (stage ids, unique (image, question) pairs, non-empty answers,
image files present), the distinct (image, split) pairs (an image in two splits is leakage: the failure names
it), and one row per split with each stage's share of rows (bounds from params). GX is imported here only,
because it takes seconds to import.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from surgvqa import entry
from surgvqa.data.raw import RAW_DIR
from surgvqa.errors import SurgvqaError
from surgvqa.io import image_relpath, is_safe_img_id, read_jsonl, write_json
from surgvqa.names import SPLITS, STAGE_IDS
from surgvqa.params.validate import StageShareBounds, ValidateParams

MAX_LISTED = 50  # failures list at most this many offending values in the report


def build_frames(splits: dict[str, list[dict]], raw_dir: Path) -> dict[str, pd.DataFrame]:
    """The three frames the suite checks."""
    rows = pd.DataFrame([{**r, "split": name} for name, part in splits.items() for r in part],
                        columns=["img_id", "image", "question", "answer", "stage_id", "split"])
    # The image path is rebuilt from a checked img_id, never taken from the file: a row pointing anywhere
    # else (an absolute path, "..") fails `image_path_ok` and nothing outside the raw folder is touched.
    expected = [image_relpath(i) if isinstance(i, str) and is_safe_img_id(i) else None for i in rows["img_id"]]
    rows["image_path_ok"] = [e is not None and e == img for e, img in zip(expected, rows["image"])]
    rows["image_present"] = [e is not None and (Path(raw_dir) / e).is_file() for e in expected]
    pairs = rows[["img_id", "split"]].drop_duplicates().reset_index(drop=True)
    shares = []
    for name in splits:
        part = rows[rows["split"] == name]
        n = max(len(part), 1)
        shares.append({"split": name, "rows": len(part),
                       **{f"stage_{s}_share": float((part["stage_id"] == s).sum()) / n for s in STAGE_IDS}})
    return {"rows": rows, "pairs": pairs, "shares": pd.DataFrame(shares)}


def expectation_plan(bounds: StageShareBounds) -> dict[str, list]:
    """Which expectations run on which frame."""
    import great_expectations as gx

    E = gx.expectations
    return {
        "rows": [
            *[E.ExpectColumnValuesToNotBeNull(column=c) for c in ("img_id", "image", "question", "stage_id")],
            E.ExpectColumnValuesToBeInSet(column="stage_id", value_set=list(STAGE_IDS)),
            E.ExpectColumnDistinctValuesToEqualSet(column="split", value_set=list(SPLITS)),
            E.ExpectCompoundColumnsToBeUnique(column_list=["img_id", "question"]),
            E.ExpectColumnValuesToNotBeNull(column="answer"),
            E.ExpectColumnValuesToNotMatchRegex(column="answer", regex=r"^\s*$"),
            E.ExpectColumnValuesToBeInSet(column="image_path_ok", value_set=[True]),
            E.ExpectColumnValuesToBeInSet(column="image_present", value_set=[True]),
        ],
        "pairs": [E.ExpectColumnValuesToBeUnique(column="img_id")],
        "shares": [E.ExpectColumnValuesToBeBetween(column=f"stage_{s}_share", min_value=bounds.for_stage(s)[0],
                                                   max_value=bounds.for_stage(s)[1]) for s in STAGE_IDS],
    }


def _plain(value):
    """A JSON-safe Python value: numpy scalars become Python ones, NaN becomes None."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def _offenders(frame: pd.DataFrame, name: str, res) -> list:
    """What failed, named in the frame's own terms: leaked img_ids, missing images, out-of-bound splits."""
    idx = res.result.get("unexpected_index_list") or []
    if name == "pairs":
        return _plain(sorted(set(res.result.get("unexpected_list") or []))[:MAX_LISTED])
    if name == "shares":
        return [f"{frame.loc[i, 'split']}={frame.loc[i, res.expectation_config.kwargs['column']]:.3f}"
                for i in idx][:MAX_LISTED]
    col = res.expectation_config.kwargs.get("column")
    key = "image" if col in ("image_present", "image_path_ok") else col
    values = [frame.loc[i, key] if key else frame.loc[i, ["img_id", "question"]].tolist() for i in idx]
    if not values:  # an aggregate expectation (e.g. the set of splits): report what was observed
        values = res.result.get("partial_unexpected_list") or [res.result.get("observed_value")]
    return _plain(values[:MAX_LISTED])


def validate_splits(splits: dict[str, list[dict]], raw_dir: Path, bounds: StageShareBounds) -> dict:
    """Run the suite; returns a JSON-ready summary with `success` and, per expectation, what failed."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frames = build_frames(splits, raw_dir)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("splits")
    results = []
    for name, expectations in expectation_plan(bounds).items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all").get_batch(
            batch_parameters={"dataframe": frames[name]})
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"kvasir_vqa_{name}", expectations=expectations))
        outcome = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        for res in outcome.results:
            cfg = res.expectation_config
            results.append({
                "frame": name,
                "expectation": cfg.type,
                "column": cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list", [])),
                "success": bool(res.success),
                "unexpected_count": int(res.result.get("unexpected_count") or 0),
                "offenders": [] if res.success else _offenders(frames[name], name, res),
            })
    leak = next(r for r in results if r["frame"] == "pairs")
    shares = frames["shares"].set_index("split")
    return {
        "success": all(r["success"] for r in results),
        "expectations_evaluated": len(results),
        "expectations_failed": sum(1 for r in results if not r["success"]),
        "leaked_images": leak["offenders"],
        "rows_per_split": {s: int(shares.loc[s, "rows"]) for s in shares.index},
        "stage_share": {s: {f"stage_{k}": round(float(shares.loc[s, f"stage_{k}_share"]), 4) for k in STAGE_IDS}
                        for s in shares.index},
        "results": results,
    }


def summary_text(summary: dict) -> str:
    """A few readable lines for the terminal."""
    lines = [f"data validation: {'PASSED' if summary['success'] else 'FAILED'} "
             f"({summary['expectations_evaluated'] - summary['expectations_failed']}/"
             f"{summary['expectations_evaluated']} expectations met)"]
    for r in summary["results"]:
        mark = "ok  " if r["success"] else "FAIL"
        extra = "" if r["success"] else f" -> {r['unexpected_count']} unexpected, e.g. {r['offenders'][:5]}"
        lines.append(f"  [{mark}] {r['frame']}: {r['expectation']}({r['column']}){extra}")
    for split, share in summary["stage_share"].items():
        lines.append(f"  {split}: {summary['rows_per_split'][split]} rows, stage shares {share}")
    return "\n".join(lines)


def run(split_dir: Path, raw_dir: Path, report_path: Path, validate: ValidateParams) -> dict:
    """The stage: validate the split files, write the report, fail when any expectation fails."""
    splits = {name: read_jsonl(Path(split_dir) / f"{name}.jsonl") for name in SPLITS}
    summary = validate_splits(splits, raw_dir, validate.stage_share)
    write_json(Path(report_path), summary)
    print(summary_text(summary))
    if not summary["success"]:
        failed = [f"{r['expectation']}({r['column']})" for r in summary["results"] if not r["success"]]
        raise SurgvqaError(f"validate: {len(failed)} expectation(s) failed: {', '.join(failed)}. "
                           f"Details in {report_path}.")
    return summary



def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.data.validate` (dvc.yaml) and `surgvqa validate`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--splits", type=Path, default=Path("data/split"))
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help=f"raw layout (default: {RAW_DIR})")
    parser.add_argument("--report", type=Path, default=Path("reports/data_validation.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, None, split_dir=args.splits, raw_dir=args.raw, report_path=args.report)


if __name__ == "__main__":
    raise SystemExit(main())
