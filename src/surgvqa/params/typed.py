"""Build typed dataclasses from parsed params.yaml, refusing what does not fit, and load only the sections a
stage reads.

Every value lives in params.yaml: section dataclasses declare types, one-line docstrings and checks, never
defaults, so there is exactly one place a value can come from. A missing, misspelt or mistyped key, or a value
outside a `Literal`, is an error naming the full dotted key.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from surgvqa.errors import SurgvqaError

SECTIONS_PACKAGE = "surgvqa.params."


class ParamsError(SurgvqaError):
    """A params.yaml value that is missing, misspelt, of the wrong type or out of range."""


def check_fraction(name: str, value: float) -> None:
    """Refuse a share outside [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ParamsError(f"{name}: must be between 0 and 1, got {value}")


def _convert(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__}")
        return build(annotation, value, key)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if isinstance(value, bool) or value not in choices:  # True == 1, but `stage: true` is a typo
            raise ParamsError(f"{key}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__}")
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and (type(value) is not annotation):
        raise ParamsError(f"{key}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    return value


def build(cls: type, values: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping: every field must be given, no unknown key, types as declared."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dotted = (prefix + ".") if prefix else ""
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ParamsError(f"{dotted}{unknown[0]}: unknown key (known keys: {', '.join(sorted(names))})")
    missing = [n for n in names if n not in values]
    if missing:
        raise ParamsError(f"{dotted}{missing[0]}: missing; every value lives in params.yaml (the keys of each "
                          "section are documented in src/surgvqa/params/<section>.py)")
    kwargs = {k: _convert(v, hints[k], dotted + k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ParamsError as e:
        raise ParamsError(f"{dotted}{e}") from None


def read_params_file(path: str | Path) -> dict:
    """The parsed params.yaml, a mapping of sections."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root or pass --params PATH")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return raw


def is_section(annotation: Any) -> bool:
    """True for a params.yaml section class (a dataclass declared in one of this package's modules)."""
    return dataclasses.is_dataclass(annotation) and annotation.__module__.startswith(SECTIONS_PACKAGE)


def sections_of(fn) -> dict[str, type]:
    """The params.yaml sections a stage function reads: its parameters typed with a section class, by name.

    The parameter's name is the section's name in params.yaml; dvc.yaml's `params:` list for the stage must be
    exactly these names (tests/test_dvc_yaml.py checks it).
    """
    hints = typing.get_type_hints(fn)
    return {name: hints[name] for name in inspect.signature(fn).parameters if is_section(hints.get(name))}


def load_sections(path: str | Path, fn) -> dict[str, Any]:
    """Build, from the params file, the sections `fn` declares (and only those), keyed by section name."""
    raw = read_params_file(path)
    out = {}
    for name, cls in sections_of(fn).items():
        if name not in raw:
            raise ParamsError(f"{path}: {name}: missing section (documented in src/surgvqa/params/{name}.py)")
        try:
            out[name] = _convert(raw[name] if raw[name] is not None else {}, cls, name)
        except ParamsError as e:
            raise ParamsError(f"{path}: {e}") from None
    return out
