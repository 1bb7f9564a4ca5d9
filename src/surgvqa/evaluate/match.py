"""Answer matching: strict (the headline number) and lenient (only beside it, for published comparisons).

Strict is a normalised exact match. Multi-valued answers are compared as sets of values (`"; "` or `;`
separators, any order). Numbers are compared as numbers (`"3"`, `"3.0"`, `"three"`), sizes with their unit and
bound (`"5-10 mm"` is `"5-10mm"`, `"1cm"` is `"10mm"`), within `tolerance`. `"none"` is a value like any other:
it matches only `"none"`, and an empty prediction matches nothing.

Lenient reproduces the matching behind published Kvasir-VQA numbers: exact, or one answer inside the other
(so `"no"` counts for `"not relevant"`), or a string similarity of at least `threshold`. It overstates accuracy
and is reported only next to the strict figure.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
UNIT_MM = {"mm": 1.0, "cm": 10.0}
_NUMBER = r"(\d+(?:\.\d+)?)"
# A bound ("<", ">"), a number or a range, and an optional unit: "<5mm", "5-10 mm", "11 - 20mm", "3", "1.5 cm".
_QUANTITY = re.compile(rf"^([<>]?)\s*{_NUMBER}(?:\s*-\s*{_NUMBER})?\s*(mm|cm)?$")


def clean(text: str) -> str:
    """Lower-case, collapse white space, drop a trailing full stop."""
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(".").strip()


def atoms(answer: str) -> list[str]:
    """The cleaned single values of an answer (`;` separates several; empty pieces are dropped)."""
    return [a for a in (clean(v) for v in answer.split(";")) if a]


def quantity(atom: str) -> tuple[str, float, float, bool] | None:
    """A numeric atom as (bound, low, high, has_unit) in millimetres for sizes; None when it is not numeric."""
    if atom in NUMBER_WORDS:
        n = float(NUMBER_WORDS[atom])
        return "", n, n, False
    m = _QUANTITY.match(atom)
    if not m:
        return None
    bound, low, high, unit = m.groups()
    scale = UNIT_MM[unit] if unit else 1.0
    lo = float(low) * scale
    return bound, lo, float(high) * scale if high else lo, unit is not None


def atom_equal(pred: str, gold: str, tolerance: float) -> bool:
    """Two cleaned atoms are equal as text, or as quantities of the same kind within `tolerance`."""
    if pred == gold:
        return True
    p, g = quantity(pred), quantity(gold)
    if p is None or g is None or p[0] != g[0] or p[3] != g[3]:
        return False
    return abs(p[1] - g[1]) <= tolerance and abs(p[2] - g[2]) <= tolerance


def strict_match(prediction: str, answer: str, tolerance: float) -> bool:
    """True when the prediction states exactly the answer's values, in any order.

    With a tolerance, values pair up by a perfect bipartite matching (augmenting paths), so "4; 2" matches
    "3; 5" within 1 whatever order the values come in.
    """
    pred, gold = sorted(set(atoms(prediction))), sorted(set(atoms(answer)))
    if not pred or len(pred) != len(gold):
        return False
    owner: dict[int, int] = {}  # gold index -> the prediction index it is paired with

    def pair(i: int, tried: set[int]) -> bool:
        for j, g in enumerate(gold):
            if j not in tried and atom_equal(pred[i], g, tolerance):
                tried.add(j)
                if j not in owner or pair(owner[j], tried):
                    owner[j] = i
                    return True
        return False

    return all(pair(i, set()) for i in range(len(pred)))


def lenient_match(prediction: str, answer: str, threshold: float, tolerance: float) -> bool:
    """Strict, or either text contains the other, or their similarity ratio reaches `threshold`."""
    pred, gold = clean(prediction), clean(answer)
    if not pred or not gold:  # "" is inside every string: an empty side never counts
        return False
    if strict_match(prediction, answer, tolerance) or pred in gold or gold in pred:
        return True
    return SequenceMatcher(None, pred, gold).ratio() >= threshold
