"""The raw Kvasir-VQA layout: `metadata.csv` (source,question,answer,img_id) and `images/<img_id>.jpg`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

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
    """One parsed CSV record: where it starts, how many physical lines it spans, its fields by column."""

    line: int
    n_lines: int
    n_fields: int
    values: dict[str, str]

    def problem(self, n_header: int) -> tuple[str, str]:
        """('', '') for a well-formed record, else (reason, detail)."""
        if self.n_lines > 1:
            # Kvasir-VQA records are one line each: a record spanning several lines is an unbalanced quote
            # (which swallows the rows after it) or an embedded newline (which would break the inline format).
            return "multiline_record", f"spans lines {self.line}-{self.line + self.n_lines - 1}"
        if self.n_fields != n_header:
            return "wrong_field_count", f"{self.n_fields} fields, header has {n_header}"
        bad = [k for k, v in self.values.items() if any("\udc80" <= ch <= "\udcff" for ch in v)]
        if bad:
            return "non_utf8", f"undecodable bytes in {', '.join(bad)}"
        return "", ""


def printable(value: str) -> str:
    """A value safe to write as UTF-8: bytes that were not UTF-8 appear as backslash escapes."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_metadata(path: Path) -> tuple[list[str], list[CsvRecord]]:
    """Parse a metadata CSV without losing a row: bad bytes, field counts and line spans are kept for checks."""
    # surrogateescape: one non-UTF-8 row is reported on its own instead of the whole file failing to decode.
    text = Path(path).read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise SurgvqaError(f"{path} is empty: expected the header {','.join(COLUMNS)}")
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise SurgvqaError(
                f"{path}: unknown column layout {header}; expected the Kvasir-VQA columns {','.join(COLUMNS)} "
                f"(missing {missing}, any order). Convert the dataset with `surgvqa data import`.")
        records, previous = [], reader.line_num
        for fields in reader:
            if fields:  # a blank line holds no data
                values = {c: (fields[header.index(c)] if header.index(c) < len(fields) else "") for c in COLUMNS}
                records.append(CsvRecord(previous + 1, reader.line_num - previous, len(fields), values))
            previous = reader.line_num
    except csv.Error as e:
        raise SurgvqaError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from e
    return header, records
