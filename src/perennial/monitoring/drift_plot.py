"""The drift report as a picture: each test's p-value against the threshold, and the reference and
current distributions behind the tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from perennial.monitoring.drift_tests import DriftReport
from perennial.reporting.plots import save_figure

DRIFT_HISTOGRAMS = {
    "text_length": ("words per text", "text length"),
    "oov_rate": ("share of words not in the tokenizer's vocabulary", "out-of-vocabulary rate"),
    "confidence": ("champion's max softmax probability", "prediction confidence"),
}


def plot_drift_report(
    report: DriftReport,
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    path: Path,
    title: str,
) -> Path:
    """Save one PNG of a drift check and return its path: -log10(p) per test against the Bonferroni
    threshold, then reference-vs-current histograms for text_length, oov_rate and confidence (each drawn
    only when both sample dicts have its key, e.g. from drift.detect_drift_with_samples)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    keys = [key for key in DRIFT_HISTOGRAMS if key in reference and key in current]
    # Two panels a row: 9.4 in at 120 dpi is 1,128 px, which the report shows at its natural size
    # (72rem), so the text reads at the size it was drawn; a single row of four panels was shrunk to
    # half and its labels could not be read.
    columns = min(2, len(keys) + 1)
    rows = -(-(len(keys) + 1) // columns)
    fig = Figure(figsize=(4.7 * columns, 3.9 * rows + 0.6), dpi=120, layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False)
    axes = list(grid.flat)
    for unused in axes[len(keys) + 1 :]:
        unused.set_visible(False)

    bars = axes[0]
    triggered = set(report.triggered_by())
    names = [t.name for t in report.tests]
    # p can underflow to 0 for a huge shift; the smallest positive double keeps -log10 finite.
    heights = [-math.log10(max(t.p_value, np.finfo(float).tiny)) for t in report.tests]
    for i, (name, height) in enumerate(zip(names, heights, strict=True)):
        alarm = name in triggered
        # Hatching as well as the fill, so an alarm is recognisable in grayscale.
        bars.bar(
            i,
            height,
            color="#d95f02" if alarm else "#bbbbbb",
            hatch="///" if alarm else None,
            edgecolor="black",
            label="below threshold (drift)" if alarm else "above threshold",
        )
    bars.axhline(
        -math.log10(report.threshold),
        color="black",
        linestyle="--",
        label=f"Bonferroni threshold {report.alpha:g}/{len(report.tests)}",
    )
    bars.set_xticks(range(len(names)), labels=names, rotation=30, ha="right")
    bars.set_ylabel("-log10(p-value)")
    bars.set_title("tests (taller = stronger evidence)")
    handles, labels = bars.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one legend entry per kind of bar
    bars.legend(unique.values(), unique.keys(), fontsize=9)

    tests = {t.name: t for t in report.tests}
    for ax, key in zip(axes[1 : len(keys) + 1], keys, strict=True):
        ref = np.asarray(reference[key], dtype=float)
        cur = np.asarray(current[key], dtype=float)
        edges = _shared_bins(np.concatenate([ref, cur]), bins=min(30, max(5, len(ref) // 5)))
        ax.hist(
            ref,
            bins=edges,
            density=True,
            histtype="stepfilled",
            color="#999999",
            alpha=0.5,
            hatch="//",
            edgecolor="#555555",
            label=f"reference (n={len(ref)})",
        )
        ax.hist(
            cur,
            bins=edges,
            density=True,
            histtype="step",
            color="black",
            linestyle="--",
            linewidth=1.8,
            label=f"current (n={len(cur)})",
        )
        xlabel, panel_title = DRIFT_HISTOGRAMS[key]
        test = tests.get(key)
        if test is not None:
            psi = test.detail.get("psi")
            panel_title += f"\nKS D={test.statistic:.3f}, p={test.p_value:.2g}"
            panel_title += f", PSI={psi:.3f}" if psi is not None else ""
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(5))  # long tick labels (0.50163) must not collide
        ax.set_ylabel("density")
        ax.set_title(panel_title, fontsize=10)
        ax.legend(fontsize=9)

    verdict = "DRIFT: " + ", ".join(report.triggered_by()) if report.drifted else "no drift"
    fig.suptitle(
        f"{title}: {verdict}\nreference {report.reference_rows} rows, current {report.current_rows} rows, "
        f"embedding MMD^2 {report.score:.4g}"
    )
    return save_figure(fig, path)


def _shared_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges for both samples, so densities of samples of different sizes compare bar for bar; whole
    numbers (word counts) get edges between integers, or bars alternate between one and two values."""
    if values.size and np.all(values == np.round(values)):
        low, high = float(values.min()), float(values.max())
        step = max(1.0, math.ceil((high - low + 1) / bins))
        return np.arange(low - 0.5, high + step, step)
    return np.histogram_bin_edges(values, bins=bins)
