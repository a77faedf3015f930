"""Plots for materialization metadata: text plots the Dagster UI shows inline, and PNGs.

The UI renders a markdown value inline only below 1,000 characters; an embedded PNG never is, so
it sits behind "[Show Markdown]". Every PNG therefore has a text twin (unicode bars) that is
visible on the Events tab without a click.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from functools import cache
from typing import Any

import dagster as dg


@cache
def _pyplot() -> Any:
    """matplotlib, loaded by the steps that draw (the ingest steps never do: ~30 MB saved)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    import matplotlib.pyplot

    return matplotlib.pyplot


def _markdown_image(figure: Any, alt: str) -> dg.MetadataValue:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


INLINE_LIMIT = 999  # characters: longer markdown is behind "[Show Markdown]" in the UI
_BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(bin_counts: Sequence[int], low: str, high: str, caption: str) -> dg.MetadataValue:
    """A histogram as one line of unicode blocks between its axis ends, shown inline."""
    top = max(bin_counts, default=0) or 1
    blocks = "".join(_BLOCKS[round(n / top * 8)] if n else "·" for n in bin_counts)
    return dg.MetadataValue.md(f"`{low} {blocks} {high}` {caption}"[:INLINE_LIMIT])


def bin_table(bin_counts: Sequence[int], low: float, high: float, caption: str) -> dg.MetadataValue:
    """Every bin of a histogram with its count, empty ones included, as an inline table."""
    width = (high - low) / len(bin_counts) if bin_counts else 0
    lines = [caption, "", "| bin | posts |", "|---|---|"]
    lines += [
        f"| {low + i * width:.2f}–{low + (i + 1) * width:.2f} | {n} |"
        for i, n in enumerate(bin_counts)
    ]
    return dg.MetadataValue.md("\n".join(lines)[:INLINE_LIMIT])


def share_bars(counts: dict[str, int], width: int = 20) -> dg.MetadataValue:
    """Each category's share as a row of blocks, shown inline."""
    total = sum(counts.values()) or 1
    lines = ["| | share | |", "|---|---|---|"]
    for name, n in counts.items():
        share = n / total
        lines.append(f"| {name} | `{'█' * round(share * width):<{width}}` | {share:.0%} ({n}) |")
    return dg.MetadataValue.md("\n".join(lines)[:INLINE_LIMIT])


def histogram(bin_counts: Sequence[int], title: str, xlabel: str) -> dg.MetadataValue:
    """Bars over [0, 1] for counts already binned (in SQL) into len(bin_counts) equal bins."""
    plt = _pyplot()
    bins = len(bin_counts)
    figure, axes = plt.subplots(figsize=(5, 2.6))
    axes.bar([(i + 0.5) / bins for i in range(bins)], bin_counts, width=1 / bins, color="#4f6bed")
    axes.set(title=title, xlabel=xlabel, ylabel="posts", xlim=(0, 1))
    return _markdown_image(figure, title)


def shares(counts: dict[str, int], title: str) -> dg.MetadataValue:
    """Horizontal bars: each category's share of the total."""
    plt = _pyplot()
    total = sum(counts.values()) or 1
    labels = list(counts)
    figure, axes = plt.subplots(figsize=(5, 0.5 + 0.4 * len(labels)))
    axes.barh(labels, [counts[k] / total for k in labels], color="#e8743b")
    axes.set(title=title, xlabel="share of labelled posts", xlim=(0, 1))
    axes.invert_yaxis()
    return _markdown_image(figure, title)


def calibration(curves: dict[str, list[dict]], title: str) -> dg.MetadataValue:
    """Mean actual against mean predicted score per bin, one line per attribute."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4))
    axes.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1)
    for name, points in curves.items():
        axes.plot(
            [p["mean_predicted"] for p in points],
            [p["mean_actual"] for p in points],
            marker="o",
            markersize=3,
            linewidth=1,
            label=name.removesuffix("_EXPERIMENTAL").lower(),
        )
    axes.set(
        title=title, xlabel="predicted", ylabel="Perspective's score", xlim=(0, 1), ylim=(0, 1)
    )
    axes.legend(fontsize=6, ncol=2, loc="upper left")
    return _markdown_image(figure, title)


def grouped_bars(values: dict[str, dict[str, float]], title: str, ylabel: str) -> dg.MetadataValue:
    """One group of bars per attribute, one bar per series (e.g. per labeler pair)."""
    plt = _pyplot()
    series = list(values)
    attributes = sorted({a for v in values.values() for a in v})
    figure, axes = plt.subplots(figsize=(7, 3))
    width = 0.8 / max(len(series), 1)
    for i, name in enumerate(series):
        axes.bar(
            [x + i * width for x in range(len(attributes))],
            [values[name].get(a, 0.0) for a in attributes],
            width=width,
            label=name,
        )
    axes.set_xticks([x + 0.4 - width / 2 for x in range(len(attributes))])
    axes.set_xticklabels([a.removeprefix("prob_") for a in attributes], rotation=60, fontsize=7)
    axes.set(
        title=title,
        ylabel=ylabel,
        ylim=(min(0, *(min(v.values(), default=0) for v in values.values())), 1),
    )
    axes.legend(fontsize=6)
    return _markdown_image(figure, title)
