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
    """One column per text: perplexity (top) and mean KL against the baseline (bottom, log
    scale; the baseline itself has none) against size, the Pareto front drawn through."""
    if not plotting_available():
        raise ImportError('plotting needs matplotlib: pip install "slmkit[plot]"')
    import matplotlib
    matplotlib.use("Agg")                   # files only, never a window
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    texts = comparison.texts
    fig, axes = plt.subplots(2, len(texts), figsize=(6 * len(texts), 8), squeeze=False)
    for column, text in enumerate(texts):
        for ax, metric, label in ((axes[0][column], "ppl", "perplexity"),
                                  (axes[1][column], "kl_mean", "mean KL against the baseline (nats)")):
            points = []
            for index, row in enumerate(comparison.rows):
                value = getattr(row.results[text], metric)
                if not value:               # KL: the baseline's is 0 (or None without a base)
                    continue
                x = row.size / 1e6
                points.append((x, value))
                ax.scatter([x], [value], color=f"C{index % 10}", zorder=3)   # one colour a variant
                ax.annotate(row.name, (x, value), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
            front = pareto_front(points)
            ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", zorder=2,
                    label="Pareto front")
            ax.set_xscale("log")
            plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(plain)
            ax.tick_params(axis="x", which="minor", labelsize=7)
            if metric == "kl_mean":
                ax.set_yscale("log")
            ax.set_xlabel("size (MB, log scale)")
            ax.set_ylabel(label)
            ax.set_title(text)
            ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{comparison.model}: size against quality (context {comparison.ctx})")
    fig.tight_layout()
    path = Path(path)
    with atomic_output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
