"""The bench's report: the figures against their targets and the seed, as markdown."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from bsky_assets.tools.bench.config import BenchConfig

SEED_POSTS = 165_163
SEED_SECONDS = 78 * 60 + 22  # the seed's measured run: 78 min 22 s
SEED_RSS_MB = 839


def markdown(r: dict[str, Any], c: BenchConfig) -> str:
    ratio = r["p2_posts_per_s"] / r["baseline_posts_per_s"] if r["baseline_posts_per_s"] else 0
    of_ceiling = r["p2_posts_per_s"] / r["p2_ceiling_posts_per_s"]
    lines = [
        f"# bsky-assets bench: {r['posts']:,} posts",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores.",
        "",
        "| figure | measured | target | vs seed's method |",
        "|---|---|---|---|",
        f"| P1 quota use at {c.quota_rps:g} parts/s | {r['p1_quota_share']:.1%} "
        f"({r['p1_achieved_rps']:.1f}/s), {r['p1_429s']} × 429 | ≥ 98 %, 0 × 429 | seed paced "
        "at ≤ 85 % (1.05 s sleep per 90 posts) |",
        f"| P2 Perspective stage | {r['p2_posts_per_s']:,.0f} posts/s; bare client ceiling "
        f"{r['p2_ceiling_posts_per_s']:,.0f}/s ({of_ceiling:.0%}){_beside(r)} "
        f"| ≥ 1,000/s and ≥ 70 % | {ratio:,.1f}× the seed's method "
        f"({r['baseline_posts_per_s']:.1f} posts/s) |",
        f"| P3 peak RSS, worst step | {r['p3_peak_rss_mb']:,.0f} MB | ≤ 500 MB | "
        f"seed: {SEED_RSS_MB} MB |",
        f"| P4 label rows into Postgres | {r['p4_rows_per_s']:,.0f} rows/s | ≥ 50,000/s | "
        "seed: 50-row inserts with a uri re-read |",
        f"| P5 LLM stage at {c.llm_rpm} RPM, {c.llm_latency_ms:g} ms latency | "
        f"{r['p5_rpm_share']:.1%} of the limit ({r['p5_achieved_rpm']:.0f}/min), "
        f"{r['p5_429s']} × 429, {r['p5_prompt_tokens_per_post']} prompt tokens/post | ≥ 95 % | — |",
        f"| P6 successor training, {r['p6_distill_posts']:,} posts × 21 attributes | "
        f"{r['p6_distill_seconds']:,.0f} s, peak {r['p6_distill_peak_rss_mb']:,.0f} MB "
        f"({r.get('p6_peak_rss_with_workers_mb', 0):,.0f} MB with its hashing workers) | "
        "≤ 600 s and ≤ 2 GB at 1,000,000 posts | — |",
        f"| P7 successor scoring, fast tier | {r['p7_scoring_posts_per_s']:,.0f} posts/s "
        f"(batches of 50, one process); {r.get('p7_in_process_posts_per_s', 0):,.0f} posts/s "
        "(batches of 1,000, in-process transport) | ≥ 2,000/s | — |",
        *_full_tier_rows(r),
        f"| P8 export of the day to Parquet ({r['p8_export']['files']} files, "
        f"{r['p8_export']['megabytes']:,} MB) | {r['p8_export']['export_seconds']:,} s "
        f"({r['p8_export']['step_seconds']:,} s with the process), peak "
        f"{r['p8_export']['peak_rss_mb']:,.0f} MB | ≤ 60 s and ≤ 500 MB at 1,000,000 posts | — |",
        "",
        "## The graph, step by step (each step in its own process)",
        "",
        _schedule(r),
        "",
        "| step | wall time | peak RSS |",
        "|---|---|---|",
        *[
            f"| {name} | {s['seconds']} s | {s['peak_rss_mb']:,.0f} MB |"
            for name, s in r["steps"].items()
        ],
        f"| **whole graph** | **{r['total_seconds']} s** ({r['posts'] / r['total_seconds']:,.0f} "
        f"posts/s end to end, process start-up included; the steps' times add up to "
        f"{r['steps_sum_seconds']} s) | |",
        "",
        f"The seed: {SEED_POSTS:,} posts in 78 min 22 s ({SEED_POSTS / SEED_SECONDS:.0f} posts/s), "
        f"{SEED_RSS_MB} MB. At its rate this day would take "
        f"{r['posts'] / (SEED_POSTS / SEED_SECONDS) / 60:,.1f} min; the seed's method measured "
        f"here: {r['baseline_posts_per_s']:.1f} posts/s on {r['baseline_posts']} posts (its fixed "
        "sleeps make a larger sample take hours).",
    ]
    return "\n".join(lines) + "\n"


def _beside(r: dict[str, Any]) -> str:
    if r["label_slots"] == 1:
        return ""
    return (
        "; measured beside the other label steps, so not comparable with the ceiling, which "
        "ran alone (`--label-slots 1` measures it alone)"
    )


def _schedule(r: dict[str, Any]) -> str:
    if r["label_slots"] == 1:
        return "Every step ran alone, one after another (`--label-slots 1`)."
    return (
        "The ingest steps ran one after another, then the label steps side by side, at most "
        f"{r['label_slots']} at a time in the order shown, as the job's multiprocess executor "
        "runs them (one step per core by default). Each label step's time is its own wall time "
        "beside the others, so the times add up to more than the whole graph."
    )


def ingest_markdown(posts: int, steps: dict[str, Any], generation_seconds: float) -> str:
    lines = [
        f"# bsky-assets bench --ingest-only: {posts:,} posts",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; "
        f"generating the landing files took {generation_seconds:.0f} s.",
        "",
        "| step | wall time | posts/s | peak RSS |",
        "|---|---|---|---|",
        *[
            f"| {name} | {s['seconds']} s | {posts / s['seconds']:,.0f} | "
            f"{s['peak_rss_mb']:,.0f} MB |"
            for name, s in steps.items()
        ],
    ]
    return "\n".join(lines) + "\n"


def _full_tier_rows(r: dict[str, Any]) -> list[str]:
    full = r.get("p6_full")
    if not full:
        return []
    if "skipped" in full:
        return [f"| P6/P7 full tier | not measured: {full['skipped']} | — | — |"]
    return [
        f"| P6 successor training, full tier, {full['posts']:,} posts | "
        f"{full['training_seconds']:,.0f} s, peak {full['peak_rss_mb']:,.0f} MB "
        f"(encoding {full.get('encoding_posts_per_s', 0):,.0f} posts/s) | "
        "≤ 2 GB at 1,000,000 | — |",
        f"| P7 successor scoring, full tier ({full.get('encoder', '?')}, "
        f"{full.get('device', 'cpu')}) | {full['scoring_posts_per_s']:,.0f} posts/s on texts "
        f"it has not seen (the process peaked at {full['peak_rss_with_scoring_mb']:,.0f} MB "
        "with the scorer's encoder loaded beside training's) | measured | — |",
    ]
