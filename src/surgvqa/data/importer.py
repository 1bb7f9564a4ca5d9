"""`surgvqa data import`: turn a local copy of Kvasir-VQA into the raw layout (raw.py).

Two inputs are understood: the Hugging Face parquet files of SimulaMet-HOST/Kvasir-VQA (a file, or a folder
searched recursively), or a CSV `source,question,answer,img_id` with a folder of `<img_id>.jpg`. Nothing is
dropped silently: a row the layout cannot hold is written to `import_skipped.csv` with its reason, and the
counts go to `import_report.json`; both sit beside the output folder so that folder holds only the layout.

Rows are counted the way `ingest` counts them: a CSV record spanning several physical lines (a stray opening
quote swallows every line up to the next quote) counts as that many rows, so `skipped_rows` says how much of
the source is lost, not how many broken records there were. Row numbers in the skipped file count data rows
from 1 across all input files, in the order they were read (for a CSV, the physical line minus the header).
An image file of a CSV export that is a symbolic link or not a regular file is refused (`unsafe_image_file`,
as ingest refuses it), never followed: nothing outside the export's image folder is copied into the dataset.

The import fails where ingest on the original would. A row import skips never reaches ingest, so ingest on
the imported layout alone would see a cleaner dataset than the source (25 of 45 rows swallowed by one quote,
or 11 % of images missing, would pass). Two ways out were weighed: keep every bad row in the layout for ingest
to quarantine, or have the import apply ingest's limit itself. Keeping them would mean forging rows the layout
cannot hold (a record with the wrong field count, bytes that are not UTF-8, two images under one id), so the
import applies the limit: it runs ingest itself (`ingest.ingest_raw`, one home for every row check) on
the layout it built and fails, writing no layout, when the rows it skipped plus the rows ingest would
quarantine are above `ingest.max_bad_fraction` of the source (the same count and the same comparison as
ingest). When it passes, ingest on the layout passes too: it sees the same bad rows minus those import
skipped, out of fewer rows. The limit is the one in the params file given to the import; lowering it later
calls for a new import. One difference is deliberate: the import re-encodes a decodable non-JPEG image (a PNG
in the parquet files, or behind a .jpg name in a CSV export) to JPEG and counts it (`reencoded_images`), where
ingest on the export itself would quarantine it as `wrong_image_format`; no row is lost by it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from surgvqa.data import raw
from surgvqa.data.ingest import ingest_raw
from surgvqa.data.qa_record import NO_PROBLEM, Problem, text
from surgvqa.errors import SurgvqaError
from surgvqa.io import is_safe_img_id, write_json
from surgvqa.params.ingest import IngestParams

SKIPPED = "import_skipped.csv"
REPORT = "import_report.json"
SKIPPED_COLUMNS = ("row", "lines", "reason", "detail", *raw.COLUMNS)
# Import's own reasons, always in the report; a malformed CSV record adds the reason `raw.CsvRecord.problem` gives
# (one home for the CSV checks, shared with ingest).
REASONS = ("unsafe_img_id", "missing_image", "unsafe_image_file", "undecodable_image", "conflicting_image")
PARQUET_COLUMNS = ("image", *raw.COLUMNS)
JPEG_MAGIC = b"\xff\xd8\xff"
BATCH_ROWS = 64  # every row carries its image's bytes, so small batches keep memory bounded


@dataclass
class SourceRow:
    """One source record as read: where it starts, how many rows it counts for, its values, its image."""

    row: int  # data row number in the source (see the module docstring)
    lines: int  # physical lines it spans: rows it counts for
    values: dict[str, Any]
    image: bytes | None
    origin: str  # where the image came from, for the skip detail
    problem: Problem  # found while reading (a malformed CSV record, an image that is a link), else NO_PROBLEM


def _parquet_rows(files: list[Path]) -> Iterator[SourceRow]:
    row = 0
    for f in files:
        with pq.ParquetFile(f) as pf:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=list(PARQUET_COLUMNS)):
                for rec in batch.to_pylist():
                    row += 1
                    image, origin = rec.pop("image"), f.name
                    # HF `datasets` stores an Image feature as {bytes, path}; a bare binary column is fine too.
                    if isinstance(image, dict):
                        origin += f" (image path {image.get('path')!r})" if image.get("path") else ""
                        image = image.get("bytes")
                    yield SourceRow(row, 1, rec, image or None, origin, NO_PROBLEM)  # no bytes: no image


def _open_parquet(source: Path) -> tuple[int, Iterator[SourceRow]]:
    files = sorted(source.rglob("*.parquet")) if source.is_dir() else [source]
    if not files:
        raise SurgvqaError(f"no *.parquet files under {source}: pass the Kvasir-VQA parquet folder or a CSV file")
    total = 0
    for f in files:
        try:
            with pq.ParquetFile(f) as pf:
                schema, rows = pf.schema_arrow, pf.metadata.num_rows
        except (pa.ArrowException, OSError) as e:
            raise SurgvqaError(f"{f} is not a readable parquet file ({e})") from e
        missing = [c for c in PARQUET_COLUMNS if c not in schema.names]
        if missing:
            raise SurgvqaError(f"{f} lacks column(s) {', '.join(missing)}; it has {', '.join(schema.names)}. "
                               f"Expected the Kvasir-VQA parquet columns {', '.join(PARQUET_COLUMNS)} (the "
                               "SimulaMet-HOST/Kvasir-VQA files as published)")
        kind = schema.field("image").type
        if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
                or (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0)):
            raise SurgvqaError(f"{f}: column 'image' is {kind}; expected a struct {{bytes, path}} or binary")
        total += rows
    return total, _parquet_rows(files)


def _read_image(images_fd: int, name: str) -> tuple[bytes | None, Problem]:
    """The bytes of a plain file `name` in the image folder (None when there is none); a symbolic link or a
    special file is refused before anything it points at is opened, as ingest refuses it (image_check.py)."""
    try:  # O_NOFOLLOW: a link to a file elsewhere is never followed; O_NONBLOCK: a FIFO never hangs
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=images_fd)
    except FileNotFoundError:
        return None, NO_PROBLEM
    except OSError as e:
        return None, ("unsafe_image_file", f"{name} is a symbolic link or cannot be opened ({e.strerror}); "
                      "not followed")
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None, ("unsafe_image_file", f"{name} is not a regular file")
        return f.read(), NO_PROBLEM


def _csv_rows(source: Path, images_dir: Path) -> Iterator[SourceRow]:
    last: tuple[str | None, bytes | None, Problem] = (None, None, NO_PROBLEM)  # rows of one image are usually adjacent
    images_fd = os.open(images_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with source.open("rb") as f, raw.parse_metadata(f, source) as (header, records):  # one record at a time
            for record in records:
                reason, detail = record.problem(len(header))
                values: dict[str, Any] = {c: raw.printable(v) for c, v in record.values.items()}
                row = SourceRow(record.line - 1, record.n_lines, values, None, str(images_dir), NO_PROBLEM)
                if reason:  # a malformed CSV record: skip it with its reason rather than guess at its fields
                    row.problem = reason, f"line {record.line}: {detail}"
                    yield row
                    continue
                img_id = text(values.get("img_id")).strip()
                if is_safe_img_id(img_id):  # never build a path from an unsafe id
                    name = f"{img_id}.jpg"
                    if last[0] != name:
                        last = (name, *_read_image(images_fd, name))
                    row.image, row.problem, row.origin = last[1], last[2], str(images_dir / name)
                yield row
    finally:
        os.close(images_fd)


def _open_csv(source: Path, images_dir: Path | None) -> tuple[int | None, Iterator[SourceRow]]:
    images_dir = source.parent / raw.IMAGES if images_dir is None else Path(images_dir)
    with source.open("rb") as f, raw.parse_metadata(f, source):
        pass  # the header is checked now, before anything is written; the rows stream later
    if not images_dir.is_dir():
        raise SurgvqaError(f"image folder {images_dir} does not exist: put <img_id>.jpg files there "
                           "or pass the folder that holds them")
    return None, _csv_rows(source, images_dir)


class _Images:
    """Writes each img_id's image once; later rows of the same id must carry the same bytes."""

    def __init__(self, raw_dir: Path) -> None:
        self.raw_dir = raw_dir
        self.seen: dict[str, tuple[str, int, Problem]] = {}  # img_id -> (sha256, first row, its problem)
        self.written = 0
        self.reencoded = 0

    def place(self, row: int, img_id: str, data: bytes) -> Problem:
        digest = hashlib.sha256(data).hexdigest()
        if img_id in self.seen:
            first_digest, first_row, problem = self.seen[img_id]
            if digest != first_digest:
                return "conflicting_image", f"image bytes differ from those of row {first_row}"
            return problem
        problem = self._write(img_id, data)
        self.seen[img_id] = (digest, row, problem)
        return problem

    def _write(self, img_id: str, data: bytes) -> Problem:
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as e:  # Pillow signals bad data with many exception types
            return "undecodable_image", f"Pillow cannot decode it: {type(e).__name__}: {e}"
        path = raw.image_path(self.raw_dir, img_id)
        if data.startswith(JPEG_MAGIC):
            path.write_bytes(data)  # the original bytes: re-encoding would alter the pixels
        else:
            image.convert("RGB").save(path, "JPEG", quality=95)
            self.reencoded += 1
        self.written += 1
        return NO_PROBLEM


def _problem(row: SourceRow, values: dict[str, str], images: _Images) -> Problem:
    """Why the layout cannot hold this row (NO_PROBLEM when it can: its image is then written)."""
    if row.problem[0]:
        return row.problem  # found while reading: a malformed CSV record, an image file that is a link
    if not is_safe_img_id(values["img_id"]):
        return "unsafe_img_id", "not a plain file name; no path was built from it"
    if row.image is None:
        return "missing_image", f"no image data in {row.origin}"
    if not row.image:
        return "undecodable_image", f"{row.origin} is empty (0 bytes)"
    return images.place(row.row, values["img_id"], row.image)


def _convert(total: int | None, rows: Iterator[SourceRow], staging: Path) -> dict[str, Any]:
    images = _Images(staging)
    skipped: Counter[str] = Counter({reason: 0 for reason in REASONS})
    read = written = missing_answer = 0
    with (staging / raw.METADATA).open("w", encoding="utf-8", newline="") as meta_f, \
            (staging / SKIPPED).open("w", encoding="utf-8", newline="") as skip_f:
        meta, skip = csv.writer(meta_f, lineterminator="\n"), csv.writer(skip_f, lineterminator="\n")
        meta.writerow(raw.COLUMNS)
        skip.writerow(SKIPPED_COLUMNS)
        for row in tqdm(rows, total=total, unit="record", desc="import"):
            read += row.lines
            values = {c: text(row.values.get(c)) for c in raw.COLUMNS}
            for c in ("source", "question", "img_id"):
                values[c] = values[c].strip()
            reason, detail = _problem(row, values, images)
            if reason:
                skipped[reason] += row.lines
                skip.writerow([row.row, row.lines, reason, detail, *(text(row.values.get(c)) for c in raw.COLUMNS)])
                continue
            # A missing answer stays in, as "", so the ingest stage quarantines and counts it.
            if not values["answer"].strip():
                values["answer"] = ""
                missing_answer += 1
            meta.writerow([values[c] for c in raw.COLUMNS])
            written += 1
    return {"rows_read": read, "rows_written": written, "images_written": images.written,
            "reencoded_images": images.reencoded, "rows_with_missing_answer": missing_answer,
            "skipped_rows": sum(skipped.values()), "skipped_by_reason": dict(skipped)}


def _ingest_check(staging: Path, counts: dict[str, Any], ingest: IngestParams) -> dict[str, Any]:
    """What ingest would make of the source: its quarantine of the rows placed in the layout plus every row
    import skipped, against `ingest.max_bad_fraction` with ingest's comparison (counts, not a rounded share)."""
    placed = {"rows_total": 0, "rows_quarantined": 0, "quarantined_by_reason": {}}
    if counts["rows_written"]:
        scratch = staging.with_name(staging.name + "-check")  # ingest's outputs, never part of the layout
        shutil.rmtree(scratch, ignore_errors=True)  # our own leftover from an import that was killed
        try:
            placed = ingest_raw(staging, scratch, ingest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    total = counts["skipped_rows"] + placed["rows_total"]
    bad = counts["skipped_rows"] + placed["rows_quarantined"]
    return {"checked_rows": total, "ingest_quarantined_rows": placed["rows_quarantined"],
            "ingest_quarantined_by_reason": placed["quarantined_by_reason"],
            "bad_rows": bad, "bad_fraction": round(bad / total, 6) if total else 0.0,
            "max_bad_fraction": ingest.max_bad_fraction, "passed": bad <= ingest.max_bad_fraction * total}


def import_dataset(source: Path, out_dir: Path, images_dir: Path | None, ingest: IngestParams) -> dict:
    """Convert a local copy of Kvasir-VQA into the raw layout at out_dir; returns the report dict. Fails, writing
    no layout, when more of the source is lost than ingest tolerates (see the module docstring)."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise SurgvqaError(f"{source} does not exist: pass the Kvasir-VQA parquet file/folder or a CSV file")
    if source.is_dir() or source.suffix.lower() == ".parquet":
        if images_dir is not None:
            raise SurgvqaError("an image folder only applies to a CSV input: parquet files carry their images")
        kind, (total, rows) = "parquet", _open_parquet(source)
    elif source.suffix.lower() == ".csv":
        kind, (total, rows) = "csv", _open_csv(source, images_dir)
    else:
        raise SurgvqaError(f"{source}: expected a .parquet file, a folder of .parquet files, or a .csv file "
                           f"with columns {','.join(raw.COLUMNS)}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SurgvqaError(f"{out_dir} already exists and is not empty: remove it or choose another --to "
                           "(an import never overwrites data)")
    # Build the layout in a sibling folder and rename it at the end, so a failed or interrupted import
    # never leaves a half-written raw folder behind that looks complete.
    staging = out_dir.parent / f".{out_dir.name}.importing"
    if staging.exists():
        shutil.rmtree(staging)  # our own leftover from an import that was killed
    (staging / raw.IMAGES).mkdir(parents=True)
    try:
        counts = _convert(total, rows, staging)
        if counts["rows_read"] == 0:
            raise SurgvqaError(f"{source} holds no data rows: nothing to import")
        check = _ingest_check(staging, counts, ingest)
        os.replace(staging / SKIPPED, out_dir.parent / SKIPPED)
        report = {"input_kind": kind, "input": str(source), **counts, **check,
                  "skipped_file": str(out_dir.parent / SKIPPED)}
        write_json(out_dir.parent / REPORT, report)
        if not check["passed"]:
            raise SurgvqaError(
                f"import: {check['bad_rows']} of {check['checked_rows']} source rows "
                f"would not reach training ({check['bad_fraction']:.1%} > ingest.max_bad_fraction "
                f"{ingest.max_bad_fraction:.1%}): skipped by import {_nonzero(counts['skipped_by_reason'])} "
                f"(listed in {out_dir.parent / SKIPPED}), quarantined by ingest's checks "
                f"{check['ingest_quarantined_by_reason']}. No layout was written to {out_dir} (the report is "
                f"{out_dir.parent / REPORT}); fix the source or raise ingest.max_bad_fraction in params.yaml, "
                "then import again.")
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _nonzero(by_reason: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in by_reason.items() if v}
