"""Stage `ingest`: read the raw layout, check every row and image, write the QA table and a quarantine.

A bad row is never repaired or replaced (no stand-in image): it goes to the quarantine file with its reason,
the counts go to the report, and the stage fails when the bad share is above `ingest.max_bad_fraction`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from surgvqa import entry
from surgvqa.data import raw
from surgvqa.errors import SurgvqaError
from surgvqa.io import image_relpath, is_safe_img_id, write_json, write_jsonl
from surgvqa.params.ingest import IngestParams

# Public copies of Kvasir-VQA write missing answers as "nan" (a pandas NaN turned into text).
MISSING_ANSWERS = {"", "nan", "NaN"}
QUARANTINE_COLUMNS = ("line", "lines", "reason", "detail", "source", "question", "answer", "img_id")


@dataclass
class IngestResult:
    """The clean QA rows, the quarantined rows with reasons, and the counts for the report."""

    rows: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def check_image(path: Path) -> str:
    """'' when the file is a decodable image, else why not."""
    if not path.is_file():
        return "no such file"
    try:
        with Image.open(path) as im:
            im.verify()  # structure and checksums
        with Image.open(path) as im:
            im.load()  # verify() does not decode: a truncated JPEG only fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {e}"
    return ""


def _row_problem(rec: raw.CsvRecord, n_header: int) -> tuple[str, str]:
    reason, detail = rec.problem(n_header)
    if reason:
        return reason, detail
    v = rec.values
    if not is_safe_img_id(v["img_id"].strip()):
        return "unsafe_img_id", "img_id is not a plain file name"
    if not v["question"].strip():
        return "missing_question", ""
    if v["answer"].strip() in MISSING_ANSWERS:
        return "missing_answer", f"answer is {v['answer']!r}"
    if "\r" in v["question"] + v["answer"]:  # the inline format is line-based
        return "multiline_field", "question or answer holds a carriage return"
    return "", ""


def ingest_rows(raw_dir: Path, max_bad_fraction: float) -> IngestResult:
    """Check every row and image under raw_dir; raise SurgvqaError when too many rows are bad."""
    raw_dir = Path(raw_dir)
    metadata = raw_dir / raw.METADATA
    if not metadata.is_file():
        raise SurgvqaError(f"{metadata} not found: make the raw data with `surgvqa data sample` (embedded "
                           "default), `surgvqa data import --from PATH` (real Kvasir-VQA) or `dvc pull data.dvc`")
    header, table = raw.read_metadata(metadata)
    result = IngestResult()
    image_problem: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for record in tqdm(table, desc="ingest", unit="row"):
        rec = {c: v.strip() for c, v in record.values.items()}
        reason, detail = _row_problem(record, len(header))
        if not reason:
            img_id = rec["img_id"]
            if img_id not in image_problem:
                image_problem[img_id] = check_image(raw.image_path(raw_dir, img_id))
            if image_problem[img_id]:
                no_file = image_problem[img_id] == "no such file"
                reason, detail = ("missing_image" if no_file else "undecodable_image"), image_problem[img_id]
            elif (img_id, rec["question"]) in seen:
                reason, detail = "duplicate_question", "the same question was already answered for this image"
        if reason:
            result.quarantine.append({"line": record.line, "lines": record.n_lines, "reason": reason,
                                      "detail": detail, **{k: raw.printable(v) for k, v in rec.items()}})
            continue
        seen.add((rec["img_id"], rec["question"]))
        result.rows.append({"img_id": rec["img_id"], "image": image_relpath(rec["img_id"]), "source": rec["source"],
                            "question": rec["question"], "answer": rec["answer"]})

    # Counted in physical lines, so a stray quote that swallowed twenty rows counts as twenty bad rows.
    total = sum(r.n_lines for r in table)
    bad = sum(q["lines"] for q in result.quarantine)
    by_reason: dict[str, int] = {}
    for q in result.quarantine:
        by_reason[q["reason"]] = by_reason.get(q["reason"], 0) + q["lines"]
    on_disk = {p.stem for p in (raw_dir / raw.IMAGES).glob("*.jpg")} if (raw_dir / raw.IMAGES).is_dir() else set()
    bad_fraction = bad / total if total else 0.0
    result.report = {
        "rows_total": total,
        "rows_ok": len(result.rows),
        "rows_quarantined": bad,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "bad_fraction": round(bad_fraction, 6),
        "max_bad_fraction": max_bad_fraction,
        "images_referenced": len(image_problem),
        "images_ok": sum(1 for p in image_problem.values() if not p),
        "images_unreferenced": len(on_disk - {r["img_id"] for r in result.rows} - set(image_problem)),
        "unique_questions": len({r["question"] for r in result.rows}),
    }
    if total == 0:
        raise SurgvqaError(f"{metadata} has a header but no rows")
    return result


def run(raw_dir: Path, out_dir: Path, report_path: Path, ingest: IngestParams) -> dict:
    """The stage: ingest, write qa.jsonl + quarantine.csv + the report, then enforce the bad-row limit."""
    max_bad_fraction = ingest.max_bad_fraction
    result = ingest_rows(raw_dir, max_bad_fraction)
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "qa.jsonl", result.rows)
    with (out_dir / "quarantine.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, QUARANTINE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.quarantine)
    write_json(Path(report_path), result.report)
    r = result.report
    if r["rows_quarantined"] > max_bad_fraction * r["rows_total"]:  # counts, not the rounded fraction
        raise SurgvqaError(
            f"ingest: {r['rows_quarantined']} of {r['rows_total']} rows are bad ({r['bad_fraction']:.1%} > "
            f"ingest.max_bad_fraction {max_bad_fraction:.1%}); reasons {r['quarantined_by_reason']}. "
            f"See {out_dir / 'quarantine.csv'}; fix the data or raise ingest.max_bad_fraction in params.yaml.")
    return r


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.data.ingest` (dvc.yaml) and `surgvqa ingest`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--raw", type=Path, default=raw.RAW_DIR, help=f"raw layout (default: {raw.RAW_DIR})")
    parser.add_argument("--out", type=Path, default=Path("data/ingested"))
    parser.add_argument("--report", type=Path, default=Path("reports/ingest.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, raw_dir=args.raw, out_dir=args.out, report_path=args.report)


def _summary(r: dict) -> None:
    print(f"ingest: {r['rows_ok']} rows kept, {r['rows_quarantined']} quarantined {r['quarantined_by_reason']}; "
          f"{r['images_ok']}/{r['images_referenced']} images decodable")


if __name__ == "__main__":
    raise SystemExit(main())
