from pathlib import Path

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.params.train import Hyper, SizeTier
from surgvqa.params.typed import ParamsError
from surgvqa.train.approaches import plan_rows, plan_stage, size_hyper
from tests.conftest import section

M = Path("models")


def test_plans_of_the_three_approaches():
    t = section("train", sequential_learning_rate=5e-5, stage_learning_rates=[4e-5, 3e-5, 2e-5])
    seq = [plan_stage("sequential", s, t, M) for s in (1, 2, 3)]
    assert [(p.train_stages, p.parent, p.learning_rate) for p in seq] == [((1,), None, 5e-5), ((2,), None, 5e-5),
                                                                          ((3,), None, 5e-5)]
    cur = [plan_stage("curriculum", s, t, M) for s in (1, 2, 3)]
    assert [p.parent for p in cur] == [None, M / "curriculum" / "stage_1", M / "curriculum" / "stage_2"]
    assert [p.learning_rate for p in cur] == [4e-5, 3e-5, 2e-5]
    base = plan_stage("baseline", None, t, M)
    assert base.train_stages == (1, 2, 3) and base.out_dir == M / "baseline" and base.parent is None
    with pytest.raises(SurgvqaError, match="drop --stage"):
        plan_stage("baseline", 2, t, M)
    with pytest.raises(SurgvqaError, match="--stage 1, 2 or 3"):
        plan_stage("curriculum", 4, t, M)


def _rows(counts: dict[int, int]) -> list[dict]:
    return [{"id": f"{s}-{i}", "stage_id": s} for s, n in counts.items() for i in range(n)]


def test_pure_curriculum_and_sequential_train_on_their_own_stage_only():
    rows = _rows({1: 10, 2: 20, 3: 4})
    for approach in ("curriculum", "sequential"):
        for s in (1, 2, 3):
            plan = plan_stage(approach, s, section("train", curriculum_replay=0.0), M)
            assert plan.replay_stages == () and {r["stage_id"] for r in plan_rows(plan, rows, 0)} == {s}
    assert len(plan_rows(plan_stage("baseline", None, section("train"), M), rows, 0)) == 34


def test_curriculum_replay_adds_a_seeded_share_of_every_earlier_stage():
    rows = _rows({1: 10, 2: 20, 3: 4})
    t = section("train", curriculum_replay=0.3)
    assert plan_stage("curriculum", 1, t, M).replay_stages == ()
    assert plan_stage("sequential", 3, t, M).replay_stages == ()  # replay is the curriculum's alone
    got2 = plan_rows(plan_stage("curriculum", 2, t, M), rows, seed=0)
    got3 = plan_rows(plan_stage("curriculum", 3, t, M), rows, seed=0)
    count = lambda got, s: sum(r["stage_id"] == s for r in got)  # noqa: E731
    assert [count(got2, s) for s in (1, 2, 3)] == [3, 20, 0]
    assert [count(got3, s) for s in (1, 2, 3)] == [3, 6, 4]
    assert [r for r in got3 if r["stage_id"] == 1] == [r for r in got2 if r["stage_id"] == 1]  # same rehearsal rows
    assert got2 == plan_rows(plan_stage("curriculum", 2, t, M), rows, seed=0)
    assert got2 != plan_rows(plan_stage("curriculum", 2, t, M), rows, seed=1)
    assert len({r["id"] for r in got3}) == len(got3)  # no row twice
    with pytest.raises(ParamsError, match="curriculum_replay"):
        section("train", curriculum_replay=1.5)


def test_automatic_sizing_picks_the_first_covering_tier():
    tiers = [SizeTier(r=4, alpha=8, epochs=5.0, batch_size=2, max_length=256, max_rows=100),
             SizeTier(r=16, alpha=32, epochs=2.0, batch_size=8, max_length=512, max_rows=1000)]
    t, lora = section("train", auto_size=True, tiers=tiers), section("lora")
    assert size_hyper(100, t, lora)[0].r == 4
    hyper, source = size_hyper(101, t, lora)
    assert (hyper.r, hyper.alpha, hyper.epochs, hyper.batch_size, hyper.max_length) == (16, 32, 2.0, 8, 512)
    assert source.startswith("tier_1") and not hasattr(hyper, "max_rows")  # the tier's size, not the tier
    with pytest.raises(SurgvqaError, match="exceed every"):
        size_hyper(1001, t, lora)
    fixed = section("train", auto_size=False, epochs=2.0)
    assert size_hyper(10**6, fixed, section("lora", r=8)) == (Hyper(8, lora.alpha, 2.0, fixed.batch_size,
                                                                    fixed.max_length), "params")
