"""The size-versus-quality plot of a comparison (PNG), drawn with matplotlib: an optional
extra (pip install "slmkit[plot]"); everything else works without it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .formats.atomic import atomic_output_file


def plotting_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both size and loss (both lower is better), by size."""
    front, best = [], float("inf")
    for size, loss in sorted(points):
        if loss < best:
            front.append((size, loss))
            best = loss
    return front


def plot_comparison(comparison, path) -> Path:
    """One panel per text: perplexity against size, the Pareto front drawn through."""
    if not plotting_available():
        raise ImportError('plotting needs matplotlib: pip install "slmkit[plot]"')
    import matplotlib
    matplotlib.use("Agg")                   # files only, never a window
    import matplotlib.pyplot as plt

    texts = comparison.texts
    fig, axes = plt.subplots(1, len(texts), figsize=(6 * len(texts), 4.5), squeeze=False)
    for ax, text in zip(axes[0], texts):
        points = [(r.size / 1e6, r.results[text].ppl) for r in comparison.rows]
        for (x, y), row in zip(points, comparison.rows):
            ax.scatter([x], [y], zorder=3)
            ax.annotate(row.name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = pareto_front(points)
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", zorder=2,
                label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("size (MB, log scale)")
        ax.set_ylabel("perplexity")
        ax.set_title(text)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{Path(comparison.model).name}: size against quality (ctx {comparison.ctx})")
    fig.tight_layout()
    path = Path(path)
    with atomic_output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
