"""PNG charts for the reports and MLflow (matplotlib without a display)."""

from __future__ import annotations

import os
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on CI runners or GPU nodes
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    """Write the figure to `path` atomically, as surgvqa.io.atomic_open does for text (a temp file beside it, then
    os.replace: a kill leaves the old chart or none, never half a PNG), and close it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as f:
            fig.savefig(f, format=path.suffix.lstrip("."), dpi=100)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        plt.close(fig)
        partial.unlink(missing_ok=True)


def stage_bars(groups: dict[str, dict], title: str, path: Path) -> None:
    """Strict accuracy per stage for each group (mode or approach), with bootstrap intervals as error bars."""
    plt = _pyplot()
    stages = sorted({s for g in groups.values() for s in g["stage"]})
    width = 0.8 / max(1, len(groups))
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, summary) in enumerate(groups.items()):
        xs = [stages.index(s) + i * width for s in stages]
        cells = [summary["stage"].get(s, {}) for s in stages]
        # No items (None) draws no bar, never a bar at 0.
        acc = [g["strict"] if g.get("strict") is not None else float("nan") for g in cells]
        cis = [g.get("strict_ci") or (a, a) for g, a in zip(cells, acc)]
        err = [[a - lo for a, (lo, _) in zip(acc, cis)], [hi - a for a, (_, hi) in zip(acc, cis)]]
        ax.bar(xs, acc, width, yerr=err, capsize=3, label=name)
    first = next(iter(groups.values()))
    majority = [first["stage"].get(s, {}).get("majority") for s in stages]
    majority = [float("nan") if m is None else m for m in majority]
    ax.scatter([stages.index(s) + 0.4 - width / 2 for s in stages], majority, marker="_", s=600, color="black",
               label="majority answer", zorder=3)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(stages))], [f"stage {s}" for s in stages])
    ax.set_ylim(0, 1)
    ax.set_ylabel("strict accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(plt, fig, path)


def forgetting_heatmap(matrix: dict[str, dict[str, float | None]], path: Path) -> None:
    """Strict accuracy on each stage's items after each curriculum stage, as an annotated grid."""
    plt = _pyplot()
    rows, cols = list(matrix), list(next(iter(matrix.values())))
    values = [[matrix[r][c] if matrix[r][c] is not None else float("nan") for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, "n/a" if v != v else f"{v:.2f}", ha="center", va="center", color="white")
    ax.set_xticks(range(len(cols)), [c.replace("_", " ") for c in cols])
    ax.set_yticks(range(len(rows)), [r.replace("_", " ") for r in rows])
    ax.set_title("curriculum: accuracy after each stage")
    fig.tight_layout()
    _save(plt, fig, path)
