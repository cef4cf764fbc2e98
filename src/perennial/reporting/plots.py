"""Pictures of results: accuracy-matrix heatmaps and strategy comparisons.

Matplotlib's object API, so it runs headless.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perennial.evaluation.gate import PROMOTE

MISSING = "—"


def plot_accuracy_matrix(matrix: pd.DataFrame, path: Path, title: str) -> Path:
    """Save the matrix as an annotated heatmap PNG (readable in grayscale) and return its path."""
    # The object-oriented Figure API renders with Agg without touching pyplot's global backend or
    # figure registry, so this is safe headless, in threads, and in a process that has a GUI.
    from matplotlib.figure import Figure

    if matrix.empty:
        raise ValueError("cannot plot an empty accuracy matrix")
    n_rows, n_cols = matrix.shape

    width = min(4.0 + 1.1 * n_cols, 24.0)
    height = min(2.0 + 0.55 * n_rows, 20.0)
    fig = Figure(figsize=(width, height), dpi=120)
    ax = fig.add_subplot()
    image = _draw_heatmap(ax, matrix)
    ax.set_xlabel("test slice")
    ax.set_ylabel("model")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_strategy_comparison(matrices: Mapping[str, pd.DataFrame], path: Path, title: str) -> Path:
    """Save one PNG comparing strategies: an accuracy-matrix heatmap per strategy on one colour scale,
    plus average accuracy over cycles, one line per strategy; return its path."""
    from matplotlib.figure import Figure

    from perennial.evaluation.continual_metrics import accuracy_over_cycles

    if not matrices:
        raise ValueError("no strategies to compare: the mapping of accuracy matrices is empty")
    for name, matrix in matrices.items():
        if matrix.empty:
            raise ValueError(f"cannot plot an empty accuracy matrix for strategy {name!r}")
    # Computed before drawing so that an invalid matrix fails fast with continual_metrics' message.
    curves = {name: accuracy_over_cycles(matrix) for name, matrix in matrices.items()}

    largest = max(max(matrix.shape) for matrix in matrices.values())
    panel = min(2.0 + 0.6 * largest, 8.0)
    fig = Figure(
        figsize=(min(panel * (len(matrices) + 1) + 1.0, 40.0), panel + 1.2), dpi=120, layout="constrained"
    )
    axes = fig.subplots(1, len(matrices) + 1, squeeze=False)[0]
    heatmaps, trend = axes[:-1], axes[-1]

    fontsize = 9 if largest <= 6 else 7
    first_rows = list(next(iter(matrices.values())).index)
    for k, (ax, (name, matrix)) in enumerate(zip(heatmaps, matrices.items(), strict=True)):
        image = _draw_heatmap(ax, matrix, fontsize=fontsize)
        ax.set_title(name)
        ax.set_xlabel("test slice")
        if k == 0:
            ax.set_ylabel("model")
        elif list(matrix.index) == first_rows:
            ax.tick_params(labelleft=False)  # same rows as the first panel: its labels serve the whole row
    # Every heatmap uses vmin=0, vmax=1, so one colour bar is true for all of them.
    fig.colorbar(image, ax=list(heatmaps), label="accuracy", shrink=0.8)

    for name, curve in curves.items():
        cycles = range(1, len(curve) + 1)
        trend.plot(cycles, [100 * a for a in curve], marker="o", label=name)
    trend.set_xticks(range(1, max(len(c) for c in curves.values()) + 1))
    trend.set_xlabel("cycle")
    trend.set_ylabel("average accuracy on slices seen (%)")
    trend.set_title("average accuracy over cycles")
    trend.grid(alpha=0.3)
    trend.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_metrics_over_versions(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Accuracy per test slice for every registered version, in order; promoted versions filled,
    rejected ones hollow. Each slice has its own line style and marker, so it reads in grayscale."""
    from matplotlib.figure import Figure

    if frame.empty:
        raise ValueError("no registered versions to plot")
    slices = [c for c in frame.columns if c != "decision"]
    promoted = (frame["decision"] == PROMOTE).to_numpy()
    x = np.arange(len(frame))
    fig = Figure(figsize=(min(5.0 + 0.6 * len(frame), 16.0), 4.2), dpi=120)
    ax = fig.add_subplot()
    styles, markers = ["-", "--", "-.", ":"], ["o", "s", "^", "D", "v", "P", "X", "*"]
    for n, name in enumerate(slices):
        values = frame[name].to_numpy(dtype=float)
        style, marker = styles[n % len(styles)], markers[n % len(markers)]
        # Hollow markers on the line (and in the legend); promoted versions are filled in on top.
        ax.plot(
            x, values, linestyle=style, marker=marker, color=f"C{n}", markerfacecolor="white", label=str(name)
        )
        ax.scatter(x[promoted], values[promoted], marker=marker, color=f"C{n}", zorder=3)
    labels = [f"{v}\n{'promoted' if p else 'rejected'}" for v, p in zip(frame.index, promoted, strict=True)]
    ax.set_xticks(x, labels=labels)
    ax.set_xlabel("registered version (filled marker: promoted; hollow: rejected)")
    ax.set_ylabel("accuracy on the test slice")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(title="test slice", fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_heatmap(ax: Any, matrix: pd.DataFrame, fontsize: int = 9) -> Any:
    """Annotated accuracy heatmap on `ax` (NaN cells grey with a dash); returns the image for a colour bar."""
    values = matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape

    # viridis gets lighter monotonically, so the order of values survives grayscale printing.
    masked = np.ma.masked_invalid(values)
    cmap = _colormap("viridis", bad="#dddddd")
    image = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")

    for r in range(n_rows):
        for c in range(n_cols):
            value = values[r, c]
            if math.isnan(value):
                text, colour = MISSING, "black"
            else:
                # Text colour from the cell's luminance, so every label keeps its contrast.
                red, green, blue, _ = cmap(value)
                light = 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.45
                text, colour = f"{value:.2f}", "black" if light else "white"
            ax.text(c, r, text, ha="center", va="center", color=colour, fontsize=fontsize)

    ax.set_xticks(range(n_cols), labels=[str(c) for c in matrix.columns], rotation=30, ha="right")
    ax.set_yticks(range(n_rows), labels=[str(i) for i in matrix.index])
    return image


def save_figure(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _colormap(name: str, bad: str) -> Any:
    import matplotlib

    # with_extremes returns a copy, so the registered colormap stays untouched for everyone else.
    return matplotlib.colormaps[name].with_extremes(bad=bad)


# Panels of plot_drift_report after the p-value bars: sample key -> (x-axis label, panel title).
