"""`ingest`: how many bad rows the stage tolerates, the largest image it takes, and what a conflict becomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from surgvqa.params.typed import ParamsError, check_fraction


@dataclass
class IngestParams:
    """Limits and choices of the ingest stage (documented in profiles/embedded/params.yaml)."""

    max_bad_fraction: float  # the share of rows (quarantined) above which ingest fails
    max_image_pixels: int  # an image of more pixels (width x height, read from its header) is quarantined
    conflicting_answers: Literal["merge", "quarantine"]  # rows giving different answers to one (image, question)

    def __post_init__(self) -> None:
        check_fraction("max_bad_fraction", self.max_bad_fraction)
        if self.max_image_pixels < 1:
            raise ParamsError(f"max_image_pixels: must be a positive number of pixels, got {self.max_image_pixels}")
