"""The raw Kvasir-VQA layout: `metadata.csv` (source,question,answer,img_id) and `images/<img_id>.jpg`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from surgvqa.errors import SurgvqaError

RAW_DIR = Path("data/raw")  # where data.dvc tracks the raw layout
METADATA = "metadata.csv"
IMAGES = "images"
COLUMNS = ("source", "question", "answer", "img_id")


def image_path(raw_dir: Path, img_id: str) -> Path:
    """Where the image of `img_id` lives; callers check the id with `io.is_safe_img_id` first."""
    return Path(raw_dir) / IMAGES / f"{img_id}.jpg"


@dataclass(frozen=True)
class CsvRecord:
    """One parsed CSV record: where it starts, how many physical lines it spans, its fields by column, and the
    CSV parser's complaint ('' when none) or whether it is a last line cut off before its newline."""

    line: int
    n_lines: int
    n_fields: int
    values: dict[str, str]
    csv_error: str = ""
    unterminated: bool = False

    def problem(self, n_header: int) -> tuple[str, str]:
        """('', '') for a well-formed record, else (reason, detail): a `qa_record.Problem` (raw.py stays a leaf)."""
        where = f"lines {self.line}-{self.line + self.n_lines - 1}" if self.n_lines > 1 else f"line {self.line}"
        if self.csv_error:  # e.g. a quote opened and never closed before the end of the file
            return "malformed_csv", f"{where}: {self.csv_error}"
        if self.n_lines > 1:
            # Kvasir-VQA records are one line each: a record spanning several lines is an unbalanced quote
            # (which swallows the rows after it) or an embedded newline (which would break the inline format).
            return "multiline_record", f"spans {where}"
        if self.unterminated:
            # Every CSV writer ends its last row with a newline: without one the file was cut off, perhaps
            # inside this row (an answer "paris i" for "paris iia" would otherwise pass as a plausible answer).
            return "unterminated_last_row", "the file ends without a newline: it may be truncated in this row"
        if self.n_fields != n_header:
            return "wrong_field_count", f"{self.n_fields} fields, header has {n_header}"
        bad = [k for k, v in self.values.items() if any("\udc80" <= ch <= "\udcff" for ch in v)]
        if bad:
            return "non_utf8", f"undecodable bytes in {', '.join(bad)}"
        return "", ""


def printable(value: str) -> str:
    """A value safe to write as UTF-8: bytes that were not UTF-8 appear as backslash escapes."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Lines:
    """The file's physical lines, remembering the last one (to tell whether the file ends with a newline)."""

    def __init__(self, text: io.TextIOBase) -> None:
        self.text, self.last = text, "\n"

    def __iter__(self) -> Iterator[str]:
        for line in self.text:
            self.last = line
            yield line


def _header(path: Path, reader) -> list[str]:
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as e:
        raise SurgvqaError(f"{path}:1: unreadable CSV header ({e})") from e
    if not header:
        raise SurgvqaError(f"{path} is empty: expected the header {','.join(COLUMNS)}")
    missing = [c for c in COLUMNS if c not in header]
    repeated = sorted({c for c in COLUMNS if header.count(c) > 1})
    if missing or repeated:
        raise SurgvqaError(
            f"{path}: unknown column layout {header}; expected the Kvasir-VQA columns {','.join(COLUMNS)} "
            f"(each once, any order; {f'missing {missing}' if missing else f'repeated {repeated}'}). "
            "Convert the dataset with `surgvqa data import`.")
    return header


def _records(reader, lines: _Lines, index: dict[str, int]) -> Iterator[CsvRecord]:
    pending: CsvRecord | None = None  # held back one record: only after the end is it known to be the last
    previous = reader.line_num
    while True:
        try:
            fields, error = next(reader), ""
        except StopIteration:
            break
        except csv.Error as e:  # strict parsing: a malformed record is reported, never silently mended
            fields, error = [], str(e)
        if fields or error:  # a blank line holds no data
            values = {c: (fields[i] if i < len(fields) else "") for c, i in index.items()}
            if pending is not None:
                yield pending
            pending = CsvRecord(previous + 1, reader.line_num - previous, len(fields), values, error)
        previous = reader.line_num
    if pending is not None:
        yield replace(pending, unterminated=not lines.last.endswith(("\n", "\r")))


@contextmanager
def parse_metadata(stream: BinaryIO, path: Path) -> Iterator[tuple[list[str], Iterator[CsvRecord]]]:
    """Stream a metadata CSV from an open binary file without losing a row: (header, records), one record in
    memory at a time; bad bytes, field counts, line spans and parser errors are kept for `CsvRecord.problem`."""
    # surrogateescape: one non-UTF-8 row is reported on its own instead of the whole file failing to decode;
    # utf-8-sig drops a byte-order mark at the start (a BOM anywhere else stays in its field and is caught).
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    lines = _Lines(text)
    reader = csv.reader(lines, strict=True)
    header = _header(path, reader)
    try:
        yield header, _records(reader, lines, {c: header.index(c) for c in COLUMNS})
    finally:
        text.detach()


def read_metadata(path: Path) -> tuple[list[str], list[CsvRecord]]:
    """Parse a whole metadata CSV file (see `parse_metadata`); for callers that need every record at once."""
    with Path(path).open("rb") as f, parse_metadata(f, Path(path)) as (header, records):
        return header, list(records)
