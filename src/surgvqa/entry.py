"""The thin entry point every pipeline stage shares.

A stage module `surgvqa.<package>.<stage>` has a function `run` whose parameters typed with a params section
(`ingest: IngestParams`) say which params.yaml sections it reads, and a `main` that parses its paths and calls
`call(run, ...)`. dvc.yaml runs `python -m surgvqa.<package>.<stage>`, so a reader finds the code from the
command, and tests/test_dvc_yaml.py derives each stage's code and params dependencies from `run`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from surgvqa.errors import SurgvqaError
from surgvqa.params.typed import load_sections


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the stage's one-line description and the `--params` option every stage has."""
    first = (doc or "").strip().splitlines()[0] if doc else None
    stage_parser = argparse.ArgumentParser(description=first)
    stage_parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                              help="params file (default: params.yaml)")
    return stage_parser


def call(run: Callable, params_path: Path, then: Callable[[Any], None] | None = None, **arguments) -> int:
    """Load the sections `run` declares, call it with them and `arguments`, hand the result to `then`
    (a summary printer); a SurgvqaError becomes one `error:` line on stderr and exit status 1. A stage started as
    several processes returns None in all but the main one, which alone prints the summary."""
    try:
        result = run(**arguments, **load_sections(params_path, run))
        if then is not None and result is not None:
            then(result)
    except SurgvqaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
