"""`surgvqa data import`: turn a local copy of Kvasir-VQA into the raw layout (raw.py).

Two inputs are understood: the Hugging Face parquet files of SimulaMet-HOST/Kvasir-VQA (a file, or a folder
searched recursively), or a CSV `source,question,answer,img_id` with a folder of `<img_id>.jpg`. Nothing is
dropped silently: a row the layout cannot hold is written to `import_skipped.csv` with its reason, and the
counts go to `import_report.json`; both sit beside the output folder so that folder holds only the layout.
Row numbers in the skipped file count data rows from 1 across all input files, in the order they were read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from surgvqa.data import raw
from surgvqa.errors import SurgvqaError
from surgvqa.io import is_safe_img_id, write_json

SKIPPED = "import_skipped.csv"
REPORT = "import_report.json"
SKIPPED_COLUMNS = ("row", "reason", "detail", *raw.COLUMNS)
REASONS = ("unsafe_img_id", "missing_image", "undecodable_image", "conflicting_image",
           "multiline_record", "wrong_field_count", "non_utf8")
PROBLEM = "_problem"  # key of a CSV row's parse problem, carried with the row to the one place that skips
JPEG_MAGIC = b"\xff\xd8\xff"
BATCH_ROWS = 64  # every row carries its image's bytes, so small batches keep memory bounded

Row = tuple[dict[str, Any], bytes | None, str]  # (record, image bytes, where the image came from)
Problem = tuple[str, str] | None  # (reason, detail) when the row is skipped


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _parquet_rows(files: list[Path]) -> Iterator[Row]:
    for f in files:
        with pq.ParquetFile(f) as pf:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=["image", *raw.COLUMNS]):
                for rec in batch.to_pylist():
                    image = rec.pop("image")
                    # HF `datasets` stores an Image feature as {bytes, path}; a bare binary column is fine too.
                    if isinstance(image, dict):
                        path = image.get("path")
                        yield rec, image.get("bytes"), f.name + (f" (image path {path!r})" if path else "")
                    else:
                        yield rec, image, f.name


def _open_parquet(source: Path) -> tuple[int, Iterator[Row]]:
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
        missing = [c for c in ("image", *raw.COLUMNS) if c not in schema.names]
        if missing:
            raise SurgvqaError(f"{f} lacks column(s) {', '.join(missing)}: expected the Kvasir-VQA parquet "
                               f"columns image, {', '.join(raw.COLUMNS)}")
        kind = schema.field("image").type
        if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
                or (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0)):
            raise SurgvqaError(f"{f}: column 'image' is {kind}; expected a struct {{bytes, path}} or binary")
        total += rows
    return total, _parquet_rows(files)


def _csv_rows(records: list[raw.CsvRecord], n_header: int, images_dir: Path) -> Iterator[Row]:
    last: tuple[Path | None, bytes | None] = (None, None)  # rows of one image are usually adjacent
    for record in records:
        reason, detail = record.problem(n_header)
        rec: dict[str, Any] = {c: raw.printable(v) for c, v in record.values.items()}
        if reason:  # a malformed CSV row: skip it with its reason rather than guess at its fields
            yield {**rec, PROBLEM: (reason, f"line {record.line}: {detail}")}, None, str(images_dir)
            continue
        img_id = _text(rec.get("img_id")).strip()
        if not is_safe_img_id(img_id):
            yield rec, None, str(images_dir)  # never build a path from an unsafe id
            continue
        path = images_dir / f"{img_id}.jpg"
        if last[0] != path:
            last = (path, path.read_bytes() if path.is_file() else None)
        yield rec, last[1], str(path)


def _open_csv(source: Path, images_dir: Path | None) -> tuple[int, Iterator[Row]]:
    images_dir = source.parent / raw.IMAGES if images_dir is None else Path(images_dir)
    header, records = raw.read_metadata(source)
    if not images_dir.is_dir():
        raise SurgvqaError(f"image folder {images_dir} does not exist: put <img_id>.jpg files there "
                           "or pass the folder that holds them")
    return len(records), _csv_rows(records, len(header), images_dir)


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
        return None


def _convert(total: int, rows: Iterator[Row], staging: Path) -> dict[str, Any]:
    images = _Images(staging)
    skipped: Counter[str] = Counter({reason: 0 for reason in REASONS})
    read = written = missing_answer = 0
    with (staging / raw.METADATA).open("w", encoding="utf-8", newline="") as meta_f, \
            (staging / SKIPPED).open("w", encoding="utf-8", newline="") as skip_f:
        meta, skip = csv.writer(meta_f, lineterminator="\n"), csv.writer(skip_f, lineterminator="\n")
        meta.writerow(raw.COLUMNS)
        skip.writerow(SKIPPED_COLUMNS)
        for read, (rec, data, origin) in enumerate(tqdm(rows, total=total, unit="row", desc="import"), 1):
            values = {c: _text(rec.get(c)) for c in raw.COLUMNS}
            for c in ("source", "question", "img_id"):
                values[c] = values[c].strip()
            problem: Problem = rec.get(PROBLEM)
            if problem is not None:
                pass  # the CSV row itself is malformed; its reason was found while parsing
            elif not is_safe_img_id(values["img_id"]):
                problem = "unsafe_img_id", "not a plain file name; no path was built from it"
            elif not data:
                problem = "missing_image", f"no image data in {origin}"
            else:
                problem = images.place(read, values["img_id"], data)
            if problem:
                skipped[problem[0]] += 1
                skip.writerow([read, *problem, *(_text(rec.get(c)) for c in raw.COLUMNS)])
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


def import_dataset(source: Path, out_dir: Path, images_dir: Path | None = None) -> dict:
    """Convert a local copy of Kvasir-VQA into the raw layout at out_dir; returns the report dict."""
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
        os.replace(staging / SKIPPED, out_dir.parent / SKIPPED)
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report = {"input_kind": kind, "input": str(source), **counts, "skipped_file": str(out_dir.parent / SKIPPED)}
    write_json(out_dir.parent / REPORT, report)
    return report
