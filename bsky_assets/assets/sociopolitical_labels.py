"""sociopolitical_labels: is the post sociopolitical, and which political lean."""

import contextlib
import time
from collections import Counter
from datetime import date
from typing import Any

import dagster as dg

from bsky_assets import settings
from bsky_assets.assets import plots
from bsky_assets.assets.checks import label_check_specs, label_checks
from bsky_assets.assets.label_metadata import table_metadata
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
from bsky_assets.assets.llm_batches import BatchLabelling, BatchTotals
from bsky_assets.assets.posts import valid_posts
from bsky_assets.assets.progress import Progress
from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import SOCIOPOLITICAL_LABELS
from bsky_assets.llm.client import LLMSettings, Post, PostLabel, SociopoliticalClient
from bsky_assets.llm.prices import cost_metadata
from bsky_assets.llm.prompt import PROMPT_VERSION
from bsky_assets.partitions import daily_partitions, one_run_per_day
from bsky_assets.resources.llm import LLMResource
from bsky_assets.resources.postgres import PostgresResource

PREVIEW_COLUMNS = ["is_sociopolitical", "political_ideology_label", "llm_model_name"]
DESCRIPTION = """Per valid post and label set: is_sociopolitical and political_ideology_label
(left, right, moderate, unclear; null when not sociopolitical). Each row records the model that
answered, the prompt version and its label set (labeler, model requested, prompt, posts per
prompt, temperature); a new prompt or model adds a label set beside the old one.
BSKY_LLM_MODE=batch sends the day through OpenAI's Batch API at half the price (see README)."""


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


def _label_synchronously(
    db: PostgresClient,
    api: SociopoliticalClient,
    label_set: LabelSet,
    day: date,
    writer: LabelWriter,
    progress: Progress,
    answered: Counter[str],
) -> None:
    texts = TextsInFlight()
    with contextlib.closing(pending_posts(db, SOCIOPOLITICAL_LABELS, label_set, day)) as frames:
        posts = (Post(uri, text) for uri, text in texts.read(frames))
        for results in api.label(posts):
            writer.write([label_row(r, texts.done(r.key)) for r in results])
            answered.update(r.model for r in results if r.model)
            progress.advance(len(results))


def _label_in_batches(
    db: PostgresClient,
    api: SociopoliticalClient,
    label_set: LabelSet,
    day: date,
    writer: LabelWriter,
    log: Any,
    mode: str,
) -> BatchLabelling:
    """Settle what a dead run left, submit what is pending and not in flight (batch mode only),
    wait and collect; what the batches did not answer stays pending for the synchronous pass."""
    batches = BatchLabelling(db, api, label_set, day, log)
    batches.resume()
    unless = batches.in_flight_sql()
    to_submit = count_pending(db, SOCIOPOLITICAL_LABELS, label_set, day, unless=unless)
    if mode == "batch":
        log.info(f"batch mode: {to_submit} posts to submit as new batches")
    if to_submit and mode == "batch":
        pages = pending_posts(db, SOCIOPOLITICAL_LABELS, label_set, day, unless=unless)
        with contextlib.closing(pages) as frames:
            texts = ((u, t) for f in frames for u, t in zip(f["uri"], f["text"], strict=True))
            batches.submit(texts)
    batches.wait_and_collect(writer, label_row)
    db.analyze(SOCIOPOLITICAL_LABELS)  # the pending query that follows joins on these rows
    return batches


def _model_answered(answered: Counter[str]) -> str | None:
    """The one model that labelled this run's rows; several are named together (rare)."""
    return ", ".join(sorted(answered)) if answered else None


@dg.asset(
    deps=[valid_posts],
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_day,
    pool="openai_api",
    group_name="labels",
    kinds={"postgres", "openai"},
    description=DESCRIPTION,
    check_specs=label_check_specs("sociopolitical_labels"),
)
def sociopolitical_labels(
    context: dg.AssetExecutionContext, postgres: PostgresResource, llm: LLMResource
) -> dg.MaterializeResult:
    llm.check_ready()
    day = date.fromisoformat(context.partition_key)
    mode = settings.llm_mode()
    db = postgres.get_client()
    api = llm.get_client()
    label_set = label_set_for(api.labeler, api.settings)
    ensure_label_table(db, SOCIOPOLITICAL_LABELS, label_set, _legacy(label_set))
    provenance = {"prompt_version": PROMPT_VERSION, "labeler": api.labeler}
    answered: Counter[str] = Counter()  # the model each answer named: what labelled the rows
    batch_totals = BatchTotals()
    with one_labelling_run(db, SOCIOPOLITICAL_LABELS, day, context.log):
        invalid_rows = write_invalid_post_rows(
            db,
            SOCIOPOLITICAL_LABELS,
            label_set,
            day,
            {**provenance, "labeler": NOT_SENT_LABELER},
        )
        context.log.info(
            f"requesting model {api.settings.model} from {api.labeler} in {mode} mode "
            f"(label set {label_set.id}); rows record the model that answers"
        )
        writer = LabelWriter(db, SOCIOPOLITICAL_LABELS, label_set, day, provenance)
        started = time.monotonic()
        if mode == "batch" or BatchLabelling.any_open(db, label_set, day):
            if mode == "sync":  # switched from batch with batches still out: they are paid for
                context.log.warning(
                    "batches from an earlier batch-mode run of this day are still open: "
                    "collecting them first, so no post is paid for twice"
                )
            batch_run = _label_in_batches(db, api, label_set, day, writer, context.log, mode)
            batch_totals = batch_run.totals
            answered.update(_batch_models(db, label_set, day))
        batch_tokens = (batch_totals.prompt_tokens, batch_totals.completion_tokens)
        sync_start = api.stats.as_dict()
        pending = count_pending(db, SOCIOPOLITICAL_LABELS, label_set, day)
        progress = Progress("sociopolitical_labels", pending, context.log)
        _label_synchronously(db, api, label_set, day, writer, progress, answered)
        progress.finish()
        seconds = time.monotonic() - started
    db.analyze(SOCIOPOLITICAL_LABELS)  # the checks and metadata below join on the rows just written

    stats = api.stats.as_dict()
    sync_tokens = (
        stats["prompt_tokens"] - sync_start["prompt_tokens"],
        stats["completion_tokens"] - sync_start["completion_tokens"],
    )
    model = _model_answered(answered)
    leans = lean_shares(db, label_set, day)
    labelled = sum(leans.values())
    metadata = {
        "llm_model": model or "none (no post answered in this run)",
        "llm_model_requested": api.settings.model,
        "labeler": api.labeler,
        "label_set": label_set.id,
        "prompt_version": PROMPT_VERSION,
        "llm_mode": mode,
        "invalid_posts_marked": invalid_rows,
        "posts_sent": writer.rows_written,
        "this_run": dict(writer.outcomes),
        "partition_outcomes": partition_outcomes(db, SOCIOPOLITICAL_LABELS, label_set, day),
        "api_requests": stats["requests"],
        "retried_posts": stats["retried_posts"],
        "status_429": stats["status_429"],
        "status_5xx": stats["status_5xx"],
        **cost_metadata(model, sync_tokens, batch_tokens, writer.rows_written),
        "prompt_tokens_per_post": round(stats["prompt_tokens"] / writer.rows_written, 1)
        if writer.rows_written
        else 0,
        "achieved_requests_per_minute": round(stats["requests"] / seconds * 60, 1)
        if seconds
        else 0,
        "configured_requests_per_minute": api.settings.requests_per_minute,
        "duration_seconds": round(seconds, 2),
        "posts_per_second": round(writer.rows_written / seconds, 2) if seconds else 0,
        "posts_by_lean": leans,
        **{f"share_{lean.replace(' ', '_')}": round(n / labelled, 4) for lean, n in leans.items()},
        "share_by_lean": plots.share_bars(leans),
        "share_by_lean_plot": plots.shares(leans, f"Posts by lean, {day}, {model or 'no model'}"),
        **table_metadata(db, SOCIOPOLITICAL_LABELS, label_set, day, PREVIEW_COLUMNS),
    }
    if mode == "batch":
        metadata["batches"] = {
            k: v for k, v in vars(batch_totals).items() if not k.endswith("tokens")
        }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=label_checks(db, SOCIOPOLITICAL_LABELS, label_set.id, day),
    )


def _batch_models(db: PostgresClient, label_set: LabelSet, day: date) -> Counter[str]:
    """Models named by the rows batches wrote for the day (a resumed run collects only some)."""
    rows = db.fetch_all(
        f"SELECT llm_model_name, count(*) FROM {db.qualified(SOCIOPOLITICAL_LABELS.name)} "
        "WHERE partition_date = %s AND label_set = %s AND llm_batch_id IS NOT NULL "
        "AND llm_model_name IS NOT NULL GROUP BY 1",
        (day, label_set.id),
    )
    return Counter({str(m): int(n) for m, n in rows})
