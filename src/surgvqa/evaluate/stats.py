"""Statistics over per-item correctness: bootstrap intervals, paired comparison with an exact McNemar test,
and precision/recall/F1 over the labels of multiple-choice answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def accuracy(correct: Sequence[bool]) -> float | None:
    """Share of correct items; None for no items (never a made-up 0)."""
    return sum(map(bool, correct)) / len(correct) if len(correct) else None


def bootstrap_ci(correct: Sequence[bool], samples: int, seed: int, level: float,
                 clusters: Sequence[str] | None = None) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the accuracy; None for no items.

    With `clusters` (the image of each item), whole clusters are resampled: the ~9 questions about one image
    are not independent, and resampling single items would give too narrow an interval.
    """
    import numpy as np

    if not len(correct):
        return None
    keys = list(clusters) if clusters is not None else list(range(len(correct)))
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    right = np.zeros(len(index))
    count = np.zeros(len(index))
    for k, c in zip(keys, correct, strict=True):
        right[index[k]] += bool(c)
        count[index[k]] += 1
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    chunk = max(1, 2_000_000 // len(index))  # bounds memory on the full dataset (~9k test items)
    for start in range(0, samples, chunk):
        n = min(chunk, samples - start)
        pick = rng.integers(0, len(index), size=(n, len(index)))
        means[start: start + n] = right[pick].sum(axis=1) / count[pick].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against 1/2."""
    from scipy.stats import binomtest

    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values for a family of tests (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Paired:
    """A against B on the same items: A right and B wrong (wins), both right, both wrong, B right and A wrong."""

    wins: int
    ties_both_right: int
    ties_both_wrong: int
    losses: int
    p_value: float

    @property
    def ties(self) -> int:
        return self.ties_both_right + self.ties_both_wrong


def paired(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> Paired:
    """Wins, ties and losses of A against B item by item, with the exact McNemar p-value."""
    if len(a_correct) != len(b_correct):
        raise ValueError(f"paired comparison needs the same items: {len(a_correct)} vs {len(b_correct)}")
    pairs = list(zip(map(bool, a_correct), map(bool, b_correct)))
    wins, losses = pairs.count((True, False)), pairs.count((False, True))
    return Paired(wins, pairs.count((True, True)), pairs.count((False, False)), losses, mcnemar_exact(wins, losses))


def label_prf(predicted: Sequence[set[str]], gold: Sequence[set[str]]) -> dict[str, float | None]:
    """Micro precision, recall and F1 over labels ("none" counts as a label, as it does in matching)."""
    true_positives = sum(len(p & g) for p, g in zip(predicted, gold))
    n_pred, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    precision = true_positives / n_pred if n_pred else None
    recall = true_positives / n_gold if n_gold else None
    f1 = (2 * precision * recall / (precision + recall) if precision and recall else
          (0.0 if precision is not None and recall is not None else None))
    return {"precision": precision, "recall": recall, "f1": f1}
