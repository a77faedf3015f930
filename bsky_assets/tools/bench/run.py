"""`bsky-assets bench`: generate a day, run every step and the servers each in its own process,
and collect the figures (see the package docstring for what each one measures)."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy.engine import URL

from bsky_assets import settings
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.connection import resolve_database_url
from bsky_assets.lib.db.embedded import to_libpq_url
from bsky_assets.lib.db.tables import WriteMode, quote
from bsky_assets.perspective.attributes import PROB_COLUMNS
from bsky_assets.perspective.tables import PERSPECTIVE_LABELS
from bsky_assets.tools.bench.config import BenchConfig
from bsky_assets.tools.bench.distill import FULL, run_distill_bench, successor_for_labelling
from bsky_assets.tools.bench.export import run_export_bench
from bsky_assets.tools.bench.report import ingest_markdown, markdown
from bsky_assets.tools.bench.seed_baseline import bare_ceiling, seed_baseline
from bsky_assets.tools.bench.servers import ServerProcess
from bsky_assets.tools.bench.step import StepResult, run_side_by_side, run_step
from bsky_assets.tools.sample_data import write_sample_day

MAIN_DAY, QUOTA_DAY, LLM_DAY = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
INGEST_STEPS = ["preprocessed_posts,landing_rejects", "classification_metadata", "valid_posts"]
LABEL_STEPS = ["perspective_labels", "sociopolitical_labels", "valence_labels"]  # each needs only
# valid_posts, so the job runs them side by side


def _write_throughput(db: PostgresClient, rows: int) -> float:
    """Label rows/s upserted through PostgresClient (the incremental writers' path)."""
    db.ensure_table(PERSPECTIVE_LABELS)
    now = datetime.now(UTC)
    chunk = 10_000
    started = time.monotonic()
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        frame = pl.DataFrame(
            {
                "uri": [f"at://bench/write/{i}" for i in range(start, start + n)],
                "label_set": ["bench"] * n,
                "was_successfully_labeled": [True] * n,
                "reason": [None] * n,
                "retryable": [False] * n,
                "attempts": [1] * n,
                "label_timestamp": [now] * n,
                **{c: [0.5] * n for c in PROB_COLUMNS},
                "labeler": ["bench"] * n,
                "labeler_version": ["1"] * n,
                "attribute_set": ["bench"] * n,
            },
            schema=PERSPECTIVE_LABELS.polars_schema(
                ["uri", "label_set", "was_successfully_labeled", "reason", "retryable", "attempts",
                 "label_timestamp", *PROB_COLUMNS, "labeler", "labeler_version", "attribute_set"]
            ),
        )  # fmt: skip
        db.write_partition(PERSPECTIVE_LABELS, date(2024, 3, 9), frame, WriteMode.UPSERT)
    return rows / (time.monotonic() - started)


def run(config: BenchConfig, out: Path | None) -> dict[str, Any]:
    """The bench, in a landing folder and a DAGSTER_HOME of its own that are removed after it
    (the landing folder of a 1,000,000-post day is about 600 MB)."""
    with (
        tempfile.TemporaryDirectory(prefix="bsky-bench-") as landing,
        tempfile.TemporaryDirectory(prefix="bsky-bench-home-") as home,
    ):
        return _run(config, out, Path(landing), Path(home))


def _run(config: BenchConfig, out: Path | None, landing: Path, home: Path) -> dict[str, Any]:
    url = resolve_database_url()
    schema = f"bench_{int(time.time())}"
    db = PostgresClient(url, schema)
    generated = time.monotonic()
    write_sample_day(landing, MAIN_DAY, config.posts, batch_size=50_000, malformed=False)
    generation_seconds = time.monotonic() - generated
    if config.ingest_only:
        env = _step_environment(url, schema, landing, home)
        return _ingest_only(config, env, schema, db, generation_seconds, out)
    quota_posts = min(config.posts, config.quota_posts)
    llm_posts = min(config.posts, config.llm_posts)
    write_sample_day(landing, QUOTA_DAY, quota_posts, batch_size=50_000, malformed=False, seed=8)
    write_sample_day(landing, LLM_DAY, llm_posts, batch_size=50_000, malformed=False, seed=9)

    perspective = ServerProcess("perspective", "--scorer", "synthetic")
    quota = ServerProcess(
        "perspective",
        "--scorer",
        "synthetic",
        "--quota-per-minute",
        str(int(config.quota_rps * 60)),
    )
    fast_llm = ServerProcess("openai")
    slow_llm = ServerProcess(
        "openai", "--latency-ms", str(config.llm_latency_ms),
        "--requests-per-minute", str(config.llm_rpm),
    )  # fmt: skip
    base_env = _step_environment(url, schema, landing, home) | {
        "BSKY_LLM_TOKENS_PER_MINUTE": "1000000000"
    }
    fast_env = base_env | {
        "PERSPECTIVE_URL": perspective.url,
        "PERSPECTIVE_REQUESTS_PER_SECOND": "1000000",
        "OPENAI_BASE_URL": fast_llm.url + "/v1",
        "BSKY_LLM_REQUESTS_PER_MINUTE": "100000000",
    }
    results: dict[str, Any] = {"posts": config.posts, "steps": {}}
    models = tempfile.TemporaryDirectory(prefix="bsky-bench-models-")
    if config.successor_labeller:
        model = successor_for_labelling(Path(models.name))
        fast_env = fast_env | {"BSKY_PERSPECTIVE_TRANSPORT": f"in-process:distilled:{model}"}
        results["labeller"] = f"successor fast tier in-process ({model.name})"
    try:
        total_started = time.monotonic()
        steps = _run_main_day(fast_env, config.label_slots)
        results["total_seconds"] = round(time.monotonic() - total_started, 1)
        results["label_slots"] = config.label_slots
        for step, (_, rss, seconds) in steps.items():
            name = step.split(",")[0]
            results["steps"][name] = {"peak_rss_mb": rss, "seconds": round(seconds, 1)}
        results["steps_sum_seconds"] = round(sum(s[2] for s in steps.values()), 1)
        results["p2_posts_per_s"] = steps["perspective_labels"][0]["posts_per_second"]
        results["p2_posts_labelled"] = steps["perspective_labels"][0]["posts_sent"]
        results["p8_export"] = run_export_bench(MAIN_DAY, fast_env)
        results["p3_peak_rss_mb"] = max(s["peak_rss_mb"] for s in results["steps"].values())

        texts = [
            r[0]
            for r in db.fetch_all(
                f"SELECT text FROM {db.qualified('valid_posts')} WHERE is_valid LIMIT %s",
                (config.ceiling_posts,),
            )
        ]
        results["p2_ceiling_posts_per_s"] = round(bare_ceiling(perspective.url, texts), 1)

        quota_env = base_env | {
            "PERSPECTIVE_URL": quota.url,
            "PERSPECTIVE_REQUESTS_PER_SECOND": str(config.quota_rps),
            "OPENAI_BASE_URL": fast_llm.url + "/v1",
        }
        for step in INGEST_STEPS:
            run_step(step, QUOTA_DAY, quota_env)
        metadata, _, _ = run_step("perspective_labels", QUOTA_DAY, quota_env)
        results["p1_achieved_rps"] = metadata["achieved_parts_per_second"]
        results["p1_quota_share"] = round(
            metadata["achieved_parts_per_second"] / config.quota_rps, 4
        )
        results["p1_429s"] = quota.stats().get("status_429", 0)

        llm_env = base_env | {
            "OPENAI_BASE_URL": slow_llm.url + "/v1",
            "BSKY_LLM_REQUESTS_PER_MINUTE": str(config.llm_rpm),
            "PERSPECTIVE_URL": perspective.url,
        }
        for step in INGEST_STEPS:
            run_step(step, LLM_DAY, llm_env)
        metadata, _, _ = run_step("sociopolitical_labels", LLM_DAY, llm_env)
        results["p5_achieved_rpm"] = metadata["achieved_requests_per_minute"]
        results["p5_rpm_share"] = round(
            metadata["achieved_requests_per_minute"] / config.llm_rpm, 4
        )
        results["p5_prompt_tokens_per_post"] = metadata["prompt_tokens_per_post"]
        results["p5_429s"] = slow_llm.stats().get("status_429", 0)

        results["p4_rows_per_s"] = round(
            _write_throughput(db, min(config.write_rows, max(config.posts, 10_000))), 0
        )

        subset = db.fetch_all(
            f"SELECT uri, text FROM {db.qualified('valid_posts')} WHERE is_valid AND "
            "partition_date = %s LIMIT %s",
            (MAIN_DAY, config.baseline_posts),
        )
        baseline = seed_baseline(perspective.url, db, subset)
        results["baseline_posts"] = baseline["posts"]
        results["baseline_posts_per_s"] = round(baseline["posts_per_s"], 1)
        results["generation_seconds"] = round(generation_seconds, 1)
        successor = run_distill_bench(config.distill_posts, settings.without_secrets())
        results["p6_distill_posts"] = successor["posts"]
        results["p6_distill_seconds"] = successor["training_seconds"]
        results["p6_distill_peak_rss_mb"] = successor["peak_rss_mb"]
        results["p6_peak_rss_with_workers_mb"] = successor["peak_rss_with_workers_mb"]
        results["p7_scoring_posts_per_s"] = successor["scoring_posts_per_s"]
        results["p7_in_process_posts_per_s"] = successor["in_process_posts_per_s"]
        if config.distill_full_posts:
            full = run_distill_bench(config.distill_full_posts, settings.without_secrets(), FULL)
            results["p6_full"] = full
    finally:
        for server in (perspective, quota, fast_llm, slow_llm):
            server.stop()
        models.cleanup()
        db.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
    report = markdown(results, config)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    return results | {"report": report}


def _run_main_day(env: dict[str, str], label_slots: int) -> dict[str, StepResult]:
    """The day as the job runs it: the ingest steps one after another, then the label steps,
    `label_slots` at a time (the cores, as Dagster's multiprocess executor; 1: one at a time)."""
    steps = {step: run_step(step, MAIN_DAY, env) for step in INGEST_STEPS}
    return steps | run_side_by_side(LABEL_STEPS, MAIN_DAY, env, label_slots)


def _step_environment(url: URL, schema: str, landing: Path, home: Path) -> dict[str, str]:
    """Every step's process: the bench's schema, landing folder and Dagster home, never a real
    API key."""
    return settings.without_secrets() | {
        "DATABASE_URL": to_libpq_url(url),
        "BSKY_DB_SCHEMA": schema,
        "BSKY_LANDING_DIR": str(landing),
        "DAGSTER_HOME": str(home),
    }


def _ingest_only(config, env, schema, db, generation_seconds, out) -> dict[str, Any]:
    steps = {}
    try:
        for step in INGEST_STEPS:
            _, rss, seconds = run_step(step, MAIN_DAY, env)
            steps[step.split(",")[0]] = {"peak_rss_mb": rss, "seconds": round(seconds, 1)}
    finally:
        db.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
    report = ingest_markdown(config.posts, steps, generation_seconds)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    peak = max(s["peak_rss_mb"] for s in steps.values())
    return {"posts": config.posts, "steps": steps, "p3_peak_rss_mb": peak, "report": report}
