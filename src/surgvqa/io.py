"""Small file helpers shared by the stages: JSON lines, JSON reports, safe image names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
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


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write one JSON object a line (UTF-8, keys in insertion order); returns the number written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSON-lines file; a malformed line is an error naming the file and line."""
    if not path.exists():
        raise SurgvqaError(f"{path} does not exist: run the stage that writes it first (dvc repro)")
    out = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SurgvqaError(f"{path}:{i}: not valid JSON ({e})") from e
    return out


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
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
