"""Strict answer matching: normalised exact match, multi-valued answers compared as sets."""

from __future__ import annotations

import re


def normalise(answer: str) -> frozenset[str]:
    """Lower-case, collapse spaces, split `;`-joined values into a set ("none" stays a value of its own)."""
    values = (re.sub(r"\s+", " ", v).strip().lower() for v in answer.split(";"))
    return frozenset(v for v in values if v)


def strict_match(prediction: str, answer: str) -> bool:
    """True when the prediction states exactly the answer's values, in any order."""
    return normalise(prediction) == normalise(answer)
