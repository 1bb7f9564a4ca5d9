import pytest

from surgvqa.evaluate import stats
from surgvqa.evaluate.stats import accuracy, holm, label_prf, mcnemar_exact, paired


def bootstrap_ci(correct, samples=1000, seed=0, clusters=None):
    return stats.bootstrap_ci(correct, samples, seed, 0.95, clusters)


def test_exact_mcnemar_on_hand_computed_cases():
    # 1 win, 6 losses: P(X <= 1 | n=7, 1/2) = 8/128, two-sided 16/128.
    assert mcnemar_exact(1, 6) == pytest.approx(0.125)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == pytest.approx(1.0) and mcnemar_exact(0, 0) == 1.0


def test_paired_counts_wins_ties_and_losses():
    a = [True, True, False, False, True, False]
    b = [False, True, False, True, False, False]
    p = paired(a, b)
    assert (p.wins, p.ties_both_right, p.ties_both_wrong, p.losses, p.ties) == (2, 1, 2, 1, 3)
    assert p.p_value == pytest.approx(1.0)  # 2 vs 1 discordant: no evidence
    with pytest.raises(ValueError, match="same items"):
        paired([True], [True, False])


def test_bootstrap_interval_on_hand_computed_cases():
    assert bootstrap_ci([True] * 20) == (1.0, 1.0) and bootstrap_ci([]) is None
    # Two items, one right: resampled means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4.
    assert bootstrap_ci([True, False], samples=4000) == (0.0, 1.0)
    lo, hi = bootstrap_ci([True] * 60 + [False] * 40, samples=2000, seed=3)
    assert lo < 0.6 < hi and 0.08 < hi - lo < 0.22  # about +-1.96 * sqrt(.24/100) = +-0.096
    assert bootstrap_ci([True] * 60 + [False] * 40, samples=2000, seed=3) == (lo, hi)  # seeded


def test_cluster_bootstrap_resamples_whole_images():
    # Two images, all right on one and all wrong on the other: a resample is 0, 1/2 or 1 whatever the item count.
    flags = [True] * 9 + [False] * 9
    assert bootstrap_ci(flags, samples=4000, clusters=["a"] * 9 + ["b"] * 9) == (0.0, 1.0)
    lo, hi = bootstrap_ci(flags, samples=4000)  # as independent items the interval is far narrower
    assert 0.2 < lo < 0.5 < hi < 0.8


def test_holm_adjusts_a_family_of_p_values():
    # Sorted 0.01, 0.02, 0.04 times 3, 2, 1 -> 0.03, 0.04, 0.04 (kept monotone), returned in input order.
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []


def test_label_precision_recall_f1_on_a_hand_case():
    pred = [{"polyp"}, {"polyp", "ulcerative colitis"}, {"none"}]
    gold = [{"polyp"}, {"polyp"}, {"oesophagitis"}]
    # tp 2 (polyp twice); predicted 4 labels; gold 3 labels.
    got = label_prf(pred, gold)
    assert got["precision"] == pytest.approx(0.5) and got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert label_prf([], [])["f1"] is None and accuracy([]) is None and accuracy([True, False]) == 0.5
