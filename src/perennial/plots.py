"""Pictures of results: accuracy-matrix heatmaps. Matplotlib's object API, so it runs headless."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MISSING = "—"


def plot_accuracy_matrix(matrix: pd.DataFrame, path: Path, title: str) -> Path:
    """Save the matrix as an annotated heatmap PNG (readable in grayscale) and return its path."""
    # The object-oriented Figure API renders with Agg without touching pyplot's global backend or
    # figure registry, so this is safe headless, in threads, and in a process that has a GUI.
    from matplotlib.figure import Figure

    if matrix.empty:
        raise ValueError("cannot plot an empty accuracy matrix")
    values = matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape

    width = min(4.0 + 1.1 * n_cols, 24.0)
    height = min(2.0 + 0.55 * n_rows, 20.0)
    fig = Figure(figsize=(width, height), dpi=120)
    ax = fig.add_subplot()

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
            ax.text(c, r, text, ha="center", va="center", color=colour, fontsize=9)

    ax.set_xticks(range(n_cols), labels=[str(c) for c in matrix.columns], rotation=30, ha="right")
    ax.set_yticks(range(n_rows), labels=[str(i) for i in matrix.index])
    ax.set_xlabel("test slice")
    ax.set_ylabel("model")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _colormap(name: str, bad: str) -> Any:
    import matplotlib

    # with_extremes returns a copy, so the registered colormap stays untouched for everyone else.
    return matplotlib.colormaps[name].with_extremes(bad=bad)
