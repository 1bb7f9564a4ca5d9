"""Build typed dataclasses from plain mappings (parsed YAML), refusing what does not fit.

A misspelt key, a wrong type or a value outside a `Literal` is an error naming the full dotted key, so a typo
never silently falls back to a default. `params.py` declares the sections; this module only checks and builds.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from surgvqa.errors import SurgvqaError


class ParamsError(SurgvqaError):
    """A params.yaml value that is missing, misspelt, of the wrong type or out of range."""


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:  # an empty section (`ingest:` with nothing under it) takes the defaults
            value = {}
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__}")
        return build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ParamsError(f"{key}: expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__}")
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ParamsError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def build(cls: type, values: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types; errors name the full key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    dotted = (prefix + ".") if prefix else ""
    unknown = sorted(set(values) - names)
    if unknown:
        raise ParamsError(f"{dotted}{unknown[0]}: unknown key (known keys: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], dotted + k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ParamsError as e:
        raise ParamsError(f"{dotted}{e}") from None
