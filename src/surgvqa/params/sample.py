"""`sample`: the embedded synthetic sample that `surgvqa data sample` and `data ensure` generate."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.params.typed import ParamsError


@dataclass
class SampleParams:
    """How many images and which seed (same values, same bytes: regenerating reproduces data.dvc)."""

    images: int
    seed: int

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ParamsError(f"images: must be at least 1, got {self.images}")
