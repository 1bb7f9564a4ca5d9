"""`sanity`: the overfit check of `surgvqa sanity-overfit`."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.params.typed import ParamsError


@dataclass
class SanityParams:
    """A few dozen samples, a high learning rate, and the loss the fresh adapter must get below."""

    samples: int
    steps: int
    learning_rate: float
    batch_size: int
    max_final_loss: float

    def __post_init__(self) -> None:
        if min(self.samples, self.steps, self.batch_size) < 1 or self.learning_rate <= 0 or self.max_final_loss <= 0:
            raise ParamsError("samples, steps and batch_size: must be at least 1; "
                              "learning_rate and max_final_loss: > 0")
