"""The three training approaches as plans: which rows each training stage sees, its parent and learning rate.

- sequential (CXRTrek): three specialists, each trained from the base on one stage's rows.
- curriculum: one adapter continued across stages 1 -> 2 -> 3 (stage N loads stage N-1's adapter). With
  `train.curriculum_replay` > 0, stage N also rehearses that share of every earlier stage's rows (README:
  "Curriculum and forgetting"); 0 is the pure curriculum.
- baseline: one adapter on every stage's rows, shuffled together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.model.lineage import adapter_dir
from surgvqa.names import APPROACHES, STAGE_IDS
from surgvqa.params.lora import LoraParams
from surgvqa.params.train import Hyper, TrainParams


@dataclass(frozen=True)
class StagePlan:
    """What one training stage trains: rows of which stages, from which parent adapter, at what rate, into where."""

    approach: str
    stage: int | None
    train_stages: tuple[int, ...]
    learning_rate: float
    parent: Path | None
    out_dir: Path
    replay_stages: tuple[int, ...] = ()
    replay_share: float = 0.0

    @property
    def name(self) -> str:
        return self.approach if self.stage is None else f"{self.approach}/stage_{self.stage}"


def plan_stage(approach: str, stage: int | None, train: TrainParams, models_dir: Path) -> StagePlan:
    """The plan of one training stage; refuses a stage the approach does not have."""
    if approach not in APPROACHES:
        raise SurgvqaError(f"unknown approach {approach!r}: choose one of {', '.join(APPROACHES)}")
    if approach == "baseline":
        if stage is not None:
            raise SurgvqaError("the baseline trains one adapter on all stages: drop --stage")
        return StagePlan(approach, None, STAGE_IDS, train.baseline_learning_rate, None,
                         adapter_dir(models_dir, approach, None))
    if stage not in STAGE_IDS:
        raise SurgvqaError(f"{approach} needs --stage 1, 2 or 3 (got {stage})")
    out = adapter_dir(models_dir, approach, stage)
    if approach == "sequential":
        return StagePlan(approach, stage, (stage,), train.sequential_learning_rate, None, out)
    parent = adapter_dir(models_dir, approach, stage - 1) if stage > 1 else None
    replay = tuple(range(1, stage)) if train.curriculum_replay > 0 else ()
    return StagePlan(approach, stage, (stage,), train.stage_learning_rates[stage - 1], parent, out,
                     replay, train.curriculum_replay if replay else 0.0)


def plan_rows(plan: StagePlan, rows: list[dict], seed: int) -> list[dict]:
    """The rows a stage trains on: its own stages' rows, then a seeded replay share of each earlier stage's rows."""
    own = [r for r in rows if r["stage_id"] in plan.train_stages]
    replayed = []
    for s in plan.replay_stages:
        earlier = [r for r in rows if r["stage_id"] == s]
        # Seeded per stage so stage 3 rehearses the same stage-1 rows whatever stage 2's row count is.
        replayed += random.Random(f"{seed}:{s}").sample(earlier, round(plan.replay_share * len(earlier)))
    return own + replayed


def size_hyper(train_rows: int, train: TrainParams, lora: LoraParams) -> tuple[Hyper, str]:
    """The hyperparameters a stage uses and where they came from: with automatic sizing the first tier whose
    max_rows covers the training set, otherwise lora.r/alpha and train.epochs/batch_size/max_length."""
    if not train.auto_size:
        return Hyper(lora.r, lora.alpha, train.epochs, train.batch_size, train.max_length), "params"
    for i, tier in enumerate(train.tiers):
        if train_rows <= tier.max_rows:
            hyper = Hyper(tier.r, tier.alpha, tier.epochs, tier.batch_size, tier.max_length)
            return hyper, f"tier_{i}(<= {tier.max_rows} rows)"
    raise SurgvqaError(f"{train_rows} training rows exceed every train.tiers max_rows: add a larger tier")
