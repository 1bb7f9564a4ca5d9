"""`convert`: how many malformed inline records the stage tolerates."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.params.typed import check_fraction


@dataclass
class ConvertParams:
    """The share of malformed inline records (rejected, reported) above which convert fails."""

    max_bad_fraction: float

    def __post_init__(self) -> None:
        check_fraction("max_bad_fraction", self.max_bad_fraction)
