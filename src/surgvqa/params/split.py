"""`split`: image-level split ratios and seed."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.params.typed import ParamsError, check_fraction


@dataclass
class SplitParams:
    """Image-level split ratios (they must sum to 1) and the shuffle seed."""

    train: float
    val: float
    test: float
    seed: int

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            check_fraction(name, getattr(self, name))
            if getattr(self, name) == 0:  # validation expects all three splits
                raise ParamsError(f"{name}: must be above 0")
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ParamsError(f"train + val + test: must sum to 1, got {self.train + self.val + self.test}")
