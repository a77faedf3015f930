"""Small PNG plots for materialization metadata, as markdown the Dagster UI renders."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import dagster as dg
import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt


def _markdown_image(figure: plt.Figure, alt: str) -> dg.MetadataValue:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


def histogram(bin_counts: Sequence[int], title: str, xlabel: str) -> dg.MetadataValue:
    """Bars over [0, 1] for counts already binned (in SQL) into len(bin_counts) equal bins."""
    bins = len(bin_counts)
    figure, axes = plt.subplots(figsize=(5, 2.6))
    axes.bar([(i + 0.5) / bins for i in range(bins)], bin_counts, width=1 / bins, color="#4f6bed")
    axes.set(title=title, xlabel=xlabel, ylabel="posts", xlim=(0, 1))
    return _markdown_image(figure, title)


def shares(counts: dict[str, int], title: str) -> dg.MetadataValue:
    """Horizontal bars: each category's share of the total."""
    total = sum(counts.values()) or 1
    labels = list(counts)
    figure, axes = plt.subplots(figsize=(5, 0.5 + 0.4 * len(labels)))
    axes.barh(labels, [counts[k] / total for k in labels], color="#e8743b")
    axes.set(title=title, xlabel="share of labelled posts", xlim=(0, 1))
    axes.invert_yaxis()
    return _markdown_image(figure, title)
