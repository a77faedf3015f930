"""sociopolitical_labels: is the post sociopolitical, and which political lean."""

import contextlib
import time
from datetime import date

import dagster as dg
import polars as pl

from bsky_assets.assets import plots
from bsky_assets.assets.labelling import (
    NOT_SENT_LABELER,
    LabelWriter,
    count_pending,
    label_table,
    partition_outcomes,
    pending_posts,
    write_invalid_post_rows,
)
from bsky_assets.assets.posts import valid_posts
from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import Column, register
from bsky_assets.llm.client import Post, PostLabel
from bsky_assets.llm.prompt import PROMPT_VERSION
from bsky_assets.partitions import daily_partitions, one_run_per_day
from bsky_assets.resources.llm import LLMResource
from bsky_assets.resources.postgres import PostgresResource

SOCIOPOLITICAL_LABELS = register(
    label_table(
        "sociopolitical_labels",
        (
            Column("is_sociopolitical", "boolean", pl.Boolean()),
            Column("political_ideology_label", "text", pl.String()),
            Column("llm_model_name", "text", pl.String()),
            Column("prompt_version", "text", pl.String(), nullable=False),
            Column("labeler", "text", pl.String(), nullable=False),
        ),
    )
)


def lean_shares(client: PostgresClient, day: date) -> dict[str, int]:
    rows = client.fetch_all(
        "SELECT coalesce(political_ideology_label, 'not sociopolitical'), count(*) "
        f"FROM {client.qualified(SOCIOPOLITICAL_LABELS.name)} "
        "WHERE partition_date = %s AND was_successfully_labeled GROUP BY 1 ORDER BY 1",
        (day,),
    )
    return {str(lean): int(n) for lean, n in rows}


def label_row(result: PostLabel) -> dict:
    return {
        "uri": result.key,
        "was_successfully_labeled": result.ok,
        "reason": result.reason,
        "retryable": result.retryable,
        "attempts": result.attempts,
        "is_sociopolitical": result.is_sociopolitical,
        "political_ideology_label": result.political_ideology_label,
        "llm_model_name": result.model,
    }


@dg.asset(
    deps=[valid_posts],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_day,
    pool="openai_api",
    group_name="labels",
    kinds={"postgres", "openai"},
)
def sociopolitical_labels(
    context: dg.AssetExecutionContext, postgres: PostgresResource, llm: LLMResource
) -> dg.MaterializeResult:
    """Per valid post: is_sociopolitical and political_ideology_label (left, right, moderate,
    unclear; null when not sociopolitical), with the model and prompt version on every row."""
    llm.check_ready()
    day = date.fromisoformat(context.partition_key)
    db = postgres.get_client()
    api = llm.get_client()
    provenance = {"prompt_version": PROMPT_VERSION, "labeler": api.labeler}
    invalid_rows = write_invalid_post_rows(
        db, SOCIOPOLITICAL_LABELS, day, {**provenance, "labeler": NOT_SENT_LABELER}
    )
    pending = count_pending(db, SOCIOPOLITICAL_LABELS, day)
    context.log.info(f"{pending} posts to label with {llm.model} via {api.labeler}")

    writer = LabelWriter(db, SOCIOPOLITICAL_LABELS, day, provenance)
    started = time.monotonic()
    with contextlib.closing(pending_posts(db, SOCIOPOLITICAL_LABELS, day)) as frames:
        posts = (
            Post(uri, text)
            for frame in frames
            for uri, text in zip(frame["uri"], frame["text"], strict=True)
        )
        for results in api.label(posts):
            writer.write([label_row(r) for r in results])
    seconds = time.monotonic() - started

    stats = api.stats.as_dict()
    cost = llm.estimated_cost(stats["prompt_tokens"], stats["completion_tokens"])
    return dg.MaterializeResult(
        metadata={
            "labeler": api.labeler,
            "llm_model": llm.model,
            "prompt_version": PROMPT_VERSION,
            "invalid_posts_marked": invalid_rows,
            "posts_sent": writer.rows_written,
            "this_run": dict(writer.outcomes),
            "partition_outcomes": partition_outcomes(db, SOCIOPOLITICAL_LABELS, day),
            "api_requests": stats["requests"],
            "retried_posts": stats["retried_posts"],
            "status_429": stats["status_429"],
            "status_5xx": stats["status_5xx"],
            "prompt_tokens": stats["prompt_tokens"],
            "completion_tokens": stats["completion_tokens"],
            "prompt_tokens_per_post": round(stats["prompt_tokens"] / writer.rows_written, 1)
            if writer.rows_written
            else 0,
            "estimated_cost_usd": round(cost, 6),
            "achieved_requests_per_minute": round(stats["requests"] / seconds * 60, 1)
            if seconds
            else 0,
            "configured_requests_per_minute": llm.requests_per_minute,
            "duration_seconds": round(seconds, 2),
            "posts_per_second": round(writer.rows_written / seconds, 2) if seconds else 0,
            "posts_by_lean": lean_shares(db, day),
            "share_by_lean": plots.shares(lean_shares(db, day), f"Posts by lean, {day}"),
        }
    )
