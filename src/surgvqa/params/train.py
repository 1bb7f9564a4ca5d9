"""`train`: supervised fine-tuning of one adapter per training stage, for all three approaches."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.params.typed import ParamsError


@dataclass(frozen=True)
class Hyper:
    """The size-dependent hyperparameters of a training stage: LoRA rank and scaling, epochs, batch, length."""

    r: int
    alpha: int
    epochs: float
    batch_size: int
    max_length: int


@dataclass(frozen=True)
class SizeTier(Hyper):
    """The hyperparameters for training sets of up to `max_rows` rows (automatic sizing)."""

    max_rows: int


@dataclass
class TrainParams:
    """How every training stage trains: schedule, batch, learning rates, replay, checkpoints, sizing."""

    epochs: float
    max_steps: int  # -1: epochs decide; a positive number stops there
    batch_size: int
    grad_accum: int
    max_length: int  # an example longer than this is an error, never truncated
    stage_learning_rates: list[float]  # curriculum stages 1, 2, 3
    sequential_learning_rate: float
    baseline_learning_rate: float
    curriculum_replay: float  # share of each earlier stage's rows a curriculum stage rehearses; 0 is pure
    warmup_ratio: float
    weight_decay: float
    logging_steps: int
    save_steps: int  # checkpoints in models/.checkpoints; a rerun resumes from the last one
    seed: int
    continuity_tolerance: float  # relative jump in the parent's validation loss that fails verify-adapter
    auto_size: bool  # true: rank, alpha, epochs, batch and max length from `tiers` by training rows
    tiers: list[SizeTier]

    def __post_init__(self) -> None:
        if len(self.stage_learning_rates) != 3 or min(self.stage_learning_rates) <= 0:
            raise ParamsError(f"stage_learning_rates: must be three positive numbers, got {self.stage_learning_rates}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_length < 16:
            raise ParamsError("batch_size and grad_accum: must be >= 1, max_length >= 16")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ParamsError("epochs or max_steps: one must be positive")
        if not 0.0 <= self.curriculum_replay <= 1.0:
            raise ParamsError(f"curriculum_replay: must be a share in [0, 1], got {self.curriculum_replay}")
        if not 0.0 <= self.warmup_ratio < 1.0:  # a share of the steps; 1 or more would be read as a step count
            raise ParamsError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.logging_steps < 1 or self.save_steps < 1:
            raise ParamsError("logging_steps and save_steps: must be at least 1")
        if self.continuity_tolerance < 0:
            raise ParamsError(f"continuity_tolerance: must be >= 0, got {self.continuity_tolerance}")
        if [t.max_rows for t in self.tiers] != sorted(t.max_rows for t in self.tiers) or not self.tiers:
            raise ParamsError("tiers: must be a non-empty list sorted by max_rows")
