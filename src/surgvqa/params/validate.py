"""`validate`: the bounds of the Great Expectations suite."""

from __future__ import annotations

from dataclasses import dataclass, fields

from surgvqa.names import STAGE_IDS
from surgvqa.params.typed import ParamsError


@dataclass
class StageShareBounds:
    """Allowed [min, max] share of QA rows per stage in every split (one field per stage id)."""

    stage_1: list[float]
    stage_2: list[float]
    stage_3: list[float]

    def __post_init__(self) -> None:
        for stage in STAGE_IDS:
            lo_hi = getattr(self, f"stage_{stage}")
            if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
                raise ParamsError(f"stage_{stage}: must be [min, max] with 0 <= min <= max <= 1, got {lo_hi}")

    def for_stage(self, stage: int) -> tuple[float, float]:
        """The (min, max) bounds of one stage."""
        lo, hi = getattr(self, f"stage_{stage}")
        return float(lo), float(hi)


# The fields above spell out the stage ids so params.yaml reads naturally; they must stay the same set.
assert [f.name for f in fields(StageShareBounds)] == [f"stage_{s}" for s in STAGE_IDS]


@dataclass
class ValidateParams:
    """The Great Expectations suite's bounds."""

    stage_share: StageShareBounds
