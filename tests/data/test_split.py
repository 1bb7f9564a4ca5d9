import random

import pytest

from surgvqa.data.split import assign_images, split_rows
from tests.conftest import section


def _rows(n_images, per_image=3):
    return [{"img_id": f"img{i:03d}", "question": f"q{k}", "stage_id": 1 + k % 3}
            for i in range(n_images) for k in range(per_image)]


def test_no_image_in_two_splits_and_ratios_hold():
    parts = split_rows(_rows(200), section("split"))
    images = {name: {r["img_id"] for r in part} for name, part in parts.items()}
    assert not (images["train"] & images["val"]) and not (images["train"] & images["test"])
    assert not (images["val"] & images["test"])
    assert [len(images[s]) for s in ("train", "val", "test")] == [140, 30, 30]
    assert sum(len(p) for p in parts.values()) == 600  # every row lands somewhere


def test_deterministic_and_independent_of_row_order():
    rows = _rows(50)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert assign_images([r["img_id"] for r in rows], section("split", seed=7)) == \
        assign_images([r["img_id"] for r in shuffled], section("split", seed=7))
    assert assign_images([r["img_id"] for r in rows], section("split", seed=7)) != \
        assign_images([r["img_id"] for r in rows], section("split", seed=8))


@pytest.mark.parametrize("n", [3, 4, 5])
def test_tiny_data_keeps_every_split_non_empty(n):
    where = assign_images([f"i{k}" for k in range(n)], section("split"))
    assert set(where.values()) == {"train", "val", "test"}


@pytest.mark.parametrize("n", [10, 20, 30, 47, 101])
def test_val_and_test_get_equal_shares_to_within_one_image(n):
    where = list(assign_images([f"i{k}" for k in range(n)], section("split")).values())
    train, val, test = (where.count(s) for s in ("train", "val", "test"))
    assert train == round(0.7 * n) and abs(val - test) <= 1 and train + val + test == n
