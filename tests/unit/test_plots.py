"""The strategy-comparison figure: written as a PNG, and refused without strategies."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from perennial.reporting.plots import plot_strategy_comparison

NAN = math.nan
SLICES = ["movies", "books", "electronics"]
CYCLES = ["after cycle 1", "after cycle 2", "after cycle 3"]


def matrix(rows: list[list[float]], index: list[str] = CYCLES) -> pd.DataFrame:
    return pd.DataFrame(rows, index=index, columns=SLICES)


def test_plot_strategy_comparison_writes_png(tmp_path: Path) -> None:
    matrices = {
        "naive": matrix([[0.90, NAN, NAN], [0.80, 0.88, NAN], [0.70, 0.79, 0.87]]),
        "replay": matrix([[0.90, 0.60, 0.55], [0.88, 0.87, 0.62], [0.87, 0.85, 0.86]]),
        # A strategy with different row labels and only two cycles still fits in the same figure.
        "short": pd.DataFrame([[0.9, NAN], [0.85, 0.8]], index=["v1", "v2"], columns=SLICES[:2]),
    }
    out = plot_strategy_comparison(matrices, tmp_path / "reports" / "strategies.png", "Strategies")
    assert out == tmp_path / "reports" / "strategies.png"
    data = out.read_bytes()
    assert len(data) > 10_000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_strategy_comparison_single_strategy(tmp_path: Path) -> None:
    out = plot_strategy_comparison(
        {"only": matrix([[0.9, NAN, NAN], [0.8, 0.9, NAN], [0.7, 0.8, 0.9]])}, tmp_path / "one.png", "One"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_strategy_comparison_rejects_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_strategy_comparison({}, tmp_path / "none.png", "Nothing")
    with pytest.raises(ValueError, match="empty"):
        plot_strategy_comparison({"blank": pd.DataFrame()}, tmp_path / "none.png", "Nothing")
    assert not (tmp_path / "none.png").exists()


def test_plot_strategy_comparison_rejects_invalid_matrix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="square"):
        plot_strategy_comparison({"wide": pd.DataFrame([[0.9, 0.8]])}, tmp_path / "bad.png", "Bad")


def test_metrics_over_versions_plot_is_a_png(tmp_path: Path) -> None:
    import pandas as pd

    from perennial.reporting.plots import plot_metrics_over_versions

    frame = pd.DataFrame(
        {"decision": ["promote", "reject"], "tweets": [0.9, 0.8], "movies": [float("nan"), 0.85]},
        index=["v1", "v2"],
    )
    path = plot_metrics_over_versions(frame, tmp_path / "lines.png", "Accuracy per version")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no registered versions"):
        plot_metrics_over_versions(frame.iloc[0:0], tmp_path / "none.png", "empty")
