"""Which files a piece of code touches, from Python's own audit events (`sys.addaudithook`): every open, listing,
creation, rename and removal this process makes, nothing mocked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO

_FILE_EVENTS = {"open", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir", "os.listdir", "os.scandir",
                "shutil.rmtree", "os.symlink", "os.link", "os.truncate", "os.chmod", "os.utime", "sqlite3.connect"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_seen: list[tuple[Path, bool]] | None = None  # (path, writes) while a `file_access` block records


def _audit(event: str, args: tuple) -> None:
    if _seen is None or event not in _FILE_EVENTS:
        return
    paths = args[:2] if event in ("os.rename", "os.replace", "os.link", "os.symlink") else args[:1]
    writes = event not in ("open", "os.listdir", "os.scandir") or bool(event == "open" and args[2] & _WRITE_FLAGS)
    for p in paths:
        if not isinstance(p, (str, bytes, os.PathLike)):
            continue  # a file descriptor
        name = os.fsdecode(p)
        if os.sep in name or name in (".", ".."):
            _seen.append((Path(os.path.abspath(name)), writes))
        # else a bare name: opened relative to a folder descriptor (the image checker's O_NOFOLLOW opens) or to
        # the working directory; either way it cannot leave that folder, so it is not a stray.


sys.addaudithook(_audit)  # Python's own audit events: every file the code under test touches, nothing mocked


@contextmanager
def file_access() -> Iterator[list[tuple[Path, bool]]]:
    """Record every file opened, listed, created, renamed or removed by this process inside the block."""
    global _seen
    _seen = seen = []
    try:
        yield seen
    finally:
        _seen = None


def strays(access: list[tuple[Path, bool]], data: Path, reads: tuple[Path, ...] = ()) -> list[tuple[Path, bool]]:
    """Accesses outside the data folder (reads are also allowed under `reads` and in Python's own code)."""
    code = (Path(sys.prefix), Path(sys.base_prefix), REPO / "src")
    return [(p, w) for p, w in access if not p.is_relative_to(data)
            and (w or not any(p.is_relative_to(r) for r in (*reads, *code)))]
