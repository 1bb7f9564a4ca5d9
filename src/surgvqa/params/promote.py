"""`promote`: the registered model `surgvqa promote` writes to, and how a candidate must compare with champion."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.params.typed import ParamsError, check_fraction


@dataclass
class PromoteParams:
    """The MLflow registered model's name and the largest per-stage strict-accuracy drop against the champion."""

    registered_model: str
    max_stage_drop: float  # champion's strict accuracy on a stage minus the candidate's, at most this

    def __post_init__(self) -> None:
        if not self.registered_model.strip():
            raise ParamsError("registered_model: must be a non-empty name")
        check_fraction("max_stage_drop", self.max_stage_drop)
