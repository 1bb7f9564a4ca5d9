from pathlib import Path

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.params import LoraParams, SizeTier, TrainParams
from surgvqa.train.approaches import plan_stage, size_hyper

M = Path("models")


def test_plans_of_the_three_approaches():
    t = TrainParams()
    seq = [plan_stage("sequential", s, t, M) for s in (1, 2, 3)]
    assert [(p.train_stages, p.parent, p.learning_rate) for p in seq] == [((1,), None, 5e-5), ((2,), None, 5e-5),
                                                                          ((3,), None, 5e-5)]
    cur = [plan_stage("curriculum", s, t, M) for s in (1, 2, 3)]
    assert [p.parent for p in cur] == [None, M / "curriculum" / "stage_1", M / "curriculum" / "stage_2"]
    assert [p.learning_rate for p in cur] == [5e-5, 3.5e-5, 2.5e-5]
    base = plan_stage("baseline", None, t, M)
    assert base.train_stages == (1, 2, 3) and base.out_dir == M / "baseline" and base.parent is None
    with pytest.raises(SurgvqaError, match="drop --stage"):
        plan_stage("baseline", 2, t, M)
    with pytest.raises(SurgvqaError, match="--stage 1, 2 or 3"):
        plan_stage("curriculum", 4, t, M)


def test_automatic_sizing_picks_the_first_covering_tier():
    tiers = [SizeTier(100, 4, 8, 5.0, 2, 256), SizeTier(1000, 16, 32, 2.0, 8, 512)]
    t = TrainParams(auto_size=True, tiers=tiers)
    assert size_hyper(100, t, LoraParams()).r == 4
    h = size_hyper(101, t, LoraParams())
    assert (h.r, h.alpha, h.epochs, h.batch_size, h.max_length) == (16, 32, 2.0, 8, 512) and h.tier.startswith("tier_1")
    with pytest.raises(SurgvqaError, match="exceed every"):
        size_hyper(1001, t, LoraParams())
    assert size_hyper(10**6, TrainParams(), LoraParams(r=8)).tier == "params"
