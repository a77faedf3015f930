"""sociopolitical_labels: is the post sociopolitical, and which political lean."""

import contextlib
import time
from collections import Counter
from datetime import date
from typing import Any

import dagster as dg

from bsky_assets.assets import plots
from bsky_assets.assets.label_sets import NOT_SENT_LABELER, LabelSet, ensure_label_table
from bsky_assets.assets.labelling import (
    LabelWriter,
    TextsInFlight,
    count_pending,
    one_labelling_run,
    partition_outcomes,
    pending_posts,
    write_invalid_post_rows,
)
from bsky_assets.assets.posts import valid_posts
from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import SOCIOPOLITICAL_LABELS
from bsky_assets.llm.client import LLMSettings, Post, PostLabel
from bsky_assets.llm.prompt import PROMPT_VERSION
from bsky_assets.partitions import daily_partitions, one_run_per_day
from bsky_assets.resources.llm import LLMResource
from bsky_assets.resources.postgres import PostgresResource


def sociopolitical_label_set(
    labeler: str, model: str, prompt_version: str, posts_per_prompt: int, temperature: float
) -> LabelSet:
    """An LLM label set: the server, the configured model, and what shapes the prompt."""
    return LabelSet(
        table=SOCIOPOLITICAL_LABELS.name,
        labeler=labeler,
        labeler_version=model,
        details={
            "prompt_version": prompt_version,
            "posts_per_prompt": posts_per_prompt,
            "temperature": temperature,
        },
    )


def label_set_for(labeler: str, settings: LLMSettings) -> LabelSet:
    return sociopolitical_label_set(
        labeler, settings.model, PROMPT_VERSION, settings.posts_per_prompt, settings.temperature
    )


def _legacy(current: LabelSet):
    """Rows from before label sets: the current configuration adopts rows of its own server and
    prompt (the configured model was not recorded then); others form their own set."""

    def legacy(row: dict[str, Any]) -> LabelSet:
        if (row["labeler"], row["prompt_version"]) == (
            current.labeler,
            current.details["prompt_version"],
        ):
            return current
        model = row["llm_model_name"] or "unknown"
        return sociopolitical_label_set(row["labeler"], model, row["prompt_version"], 10, 0.0)

    return legacy


def lean_shares(client: PostgresClient, label_set: LabelSet, day: date) -> dict[str, int]:
    rows = client.fetch_all(
        "SELECT coalesce(political_ideology_label, 'not sociopolitical'), count(*) "
        f"FROM {client.qualified(SOCIOPOLITICAL_LABELS.name)} WHERE partition_date = %s "
        "AND label_set = %s AND was_successfully_labeled GROUP BY 1 ORDER BY 1",
        (day, label_set.id),
    )
    return {str(lean): int(n) for lean, n in rows}


def label_row(result: PostLabel, text_hash: str) -> dict:
    return {
        "uri": result.key,
        "text_sha256": text_hash,
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
    label_set = label_set_for(api.labeler, api.settings)
    ensure_label_table(db, SOCIOPOLITICAL_LABELS, label_set, _legacy(label_set))
    provenance = {"prompt_version": PROMPT_VERSION, "labeler": api.labeler}
    with one_labelling_run(db, SOCIOPOLITICAL_LABELS, day, context.log):
        invalid_rows = write_invalid_post_rows(
            db,
            SOCIOPOLITICAL_LABELS,
            label_set,
            day,
            {**provenance, "labeler": NOT_SENT_LABELER},
        )
        pending = count_pending(db, SOCIOPOLITICAL_LABELS, label_set, day)
        context.log.info(
            f"{pending} posts to label; model {api.settings.model} requested from {api.labeler} "
            f"(label set {label_set.id})"
        )

        writer = LabelWriter(db, SOCIOPOLITICAL_LABELS, label_set, day, provenance)
        texts = TextsInFlight()
        answered: Counter[str] = Counter()  # the model each answer named: what labelled the rows
        started = time.monotonic()
        with contextlib.closing(pending_posts(db, SOCIOPOLITICAL_LABELS, label_set, day)) as frames:
            posts = (Post(uri, text) for uri, text in texts.read(frames))
            for results in api.label(posts):
                writer.write([label_row(r, texts.done(r.key)) for r in results])
                answered.update(r.model for r in results if r.model)
        seconds = time.monotonic() - started

    stats = api.stats.as_dict()
    cost = llm.estimated_cost(stats["prompt_tokens"], stats["completion_tokens"])
    leans = lean_shares(db, label_set, day)
    return dg.MaterializeResult(
        metadata={
            "labeler": api.labeler,
            "llm_model_requested": api.settings.model,
            "llm_models_answered": dict(answered),
            "label_set": label_set.id,
            "prompt_version": PROMPT_VERSION,
            "invalid_posts_marked": invalid_rows,
            "posts_sent": writer.rows_written,
            "this_run": dict(writer.outcomes),
            "partition_outcomes": partition_outcomes(db, SOCIOPOLITICAL_LABELS, label_set, day),
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
            "configured_requests_per_minute": api.settings.requests_per_minute,
            "duration_seconds": round(seconds, 2),
            "posts_per_second": round(writer.rows_written / seconds, 2) if seconds else 0,
            "posts_by_lean": leans,
            "share_by_lean": plots.shares(leans, f"Posts by lean, {day}"),
        }
    )
