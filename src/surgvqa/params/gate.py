"""`gate`: the thresholds a merged candidate must meet before `surgvqa promote` may make it champion."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.names import STAGE_IDS
from surgvqa.params.typed import ParamsError, check_fraction


@dataclass
class GateParams:
    """Accuracy floors, the significance of the paired test against the majority answer, merge-fidelity limits
    and the smallest test split worth gating on."""

    min_strict_overall: float  # strict accuracy of the merged candidate on the test split
    min_strict_stage: list[float]  # one floor per stage, stage 1 first
    significance: float | None  # the exact McNemar p-value against the majority answer must be below this
    # (null: reported, not required; only for the test profile, whose model is trained for two steps)
    min_fidelity_ties: float  # share of test items the merged model answers exactly as base + adapters
    max_fidelity_strict_drop: float  # strict accuracy of base + adapters minus the merged model's
    max_logit_difference: float  # largest |logit| difference on the probe batch
    min_items: int  # fewer test items than this cannot support a release decision

    def __post_init__(self) -> None:
        check_fraction("min_strict_overall", self.min_strict_overall)
        if len(self.min_strict_stage) != len(STAGE_IDS):
            raise ParamsError(f"min_strict_stage: one value per stage {list(STAGE_IDS)}, got {self.min_strict_stage}")
        for i, value in enumerate(self.min_strict_stage):
            check_fraction(f"min_strict_stage[{i}]", value)
        if self.significance is not None and not 0 < self.significance < 1:
            raise ParamsError(f"significance: must be in (0, 1), got {self.significance}")
        check_fraction("min_fidelity_ties", self.min_fidelity_ties)
        check_fraction("max_fidelity_strict_drop", self.max_fidelity_strict_drop)
        if self.max_logit_difference < 0 or self.min_items < 1:
            raise ParamsError("max_logit_difference: must be >= 0; min_items: >= 1")
