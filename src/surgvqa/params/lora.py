"""`lora`: the adapter's shape."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.params.typed import ParamsError, check_fraction


@dataclass
class LoraParams:
    """LoRA on the language model only: rank, scaling, dropout and the projection names it targets."""

    r: int
    alpha: int
    dropout: float
    target_modules: list[str]

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ParamsError(f"r and alpha: must be at least 1, got r={self.r}, alpha={self.alpha}")
        check_fraction("dropout", self.dropout)
        if not self.target_modules:
            raise ParamsError("target_modules: must name at least one projection")
