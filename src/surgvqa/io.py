"""Small file helpers shared by the stages: JSON lines, JSON reports, safe image names.

Every write is atomic (a temporary file beside the target, then `os.replace`): a stage killed mid-write leaves
the previous file or none, never half a file that a later stage or `dvc repro` could take as complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from surgvqa.errors import SurgvqaError

# A Kvasir-VQA img_id is an opaque token such as "cla820gl0s3nv071u4fgd7xgq". Anything that could step out
# of the images folder (separators, "..", absolute paths, NUL) is refused before it touches the file system.
_SAFE_IMG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def is_safe_img_id(img_id: str) -> bool:
    """True when img_id is a plain file-name stem that cannot escape the images folder."""
    return bool(_SAFE_IMG_ID.fullmatch(img_id)) and ".." not in img_id


def image_relpath(img_id: str) -> str:
    """The image path of an img_id relative to the raw data folder, as the inline and CXRTrek formats write it."""
    if not is_safe_img_id(img_id):
        raise SurgvqaError(f"img_id {img_id!r} is not a plain file name; refusing to build a path from it")
    return f"images/{img_id}.jpg"


@contextmanager
def atomic_open(path: Path) -> Iterator:
    """Open `path` for writing text; the file appears under its name only when the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def replace_folder(target: Path, complete: Path) -> None:
    """Put the folder `complete` in the place of `target` by renames only: the old folder is moved aside whole
    before it is deleted, so a kill at any point leaves the old folder, none, or the new one, never a part."""
    aside = target.with_name(f".{target.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    if target.exists():
        target.rename(aside)
    complete.rename(target)
    shutil.rmtree(aside, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (see the module docstring)."""
    with atomic_open(path) as f:
        f.write(text)


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write one JSON object a line (UTF-8, keys in insertion order), atomically; returns the number written."""
    n = 0
    with atomic_open(path) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def numbered_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Stream a JSON-lines file as (line number, object), blank lines skipped; a line that is not valid UTF-8,
    not valid JSON or not an object is an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise SurgvqaError(f"{path} does not exist: run the stage that writes it first (dvc repro)")
    with path.open("rb") as f:
        for i, raw_line in enumerate(f, 1):
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SurgvqaError(f"{path}:{i}: not valid UTF-8 ({e})") from e
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise SurgvqaError(f"{path}:{i}: not valid JSON ({e})") from e
            if not isinstance(record, dict):
                raise SurgvqaError(f"{path}:{i}: expected a JSON object, got {type(record).__name__}")
            yield i, record


def iter_jsonl(path: Path) -> Iterator[dict]:
    """Stream a JSON-lines file one object at a time (see `numbered_jsonl` for the errors)."""
    return (record for _, record in numbered_jsonl(path))


def read_jsonl(path: Path) -> list[dict]:
    """Read a whole JSON-lines file (see `numbered_jsonl` for the errors)."""
    return list(iter_jsonl(path))


def read_json(path: Path, hint: str = "run the stage that writes it first (dvc repro)") -> dict:
    """Read a JSON report or record; a missing file is an error saying how to produce it (`hint`)."""
    if not path.is_file():
        raise SurgvqaError(f"{path} does not exist: {hint}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SurgvqaError(f"{path}: not valid JSON ({e})") from e


def write_json(path: Path, obj: dict) -> None:
    """Write a JSON report, pretty and with sorted keys so DVC diffs stay readable."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    write_text(path, text + "\n")
