"""Any LLM task as a labeller: the label set, sync and Batch API modes, tokens and cost.

A task (llm/task.py) declares what is asked; this module is what every task shares when it
labels a day: the label set (server, model requested, prompt version, posts per prompt,
temperature), the batch pre-pass (BSKY_LLM_MODE=batch, or batches an earlier run left open),
rows that record the model that *answered*, and the metadata the UI shows about the model, the
tokens and their price. The engine (lib/labelling) does the rest.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from bsky_assets import settings
from bsky_assets.lib.db.tables import TableSpec
from bsky_assets.lib.labelling.engine import LabellingDay
from bsky_assets.lib.labelling.label_sets import NOT_SENT_LABELER, LabelSet
from bsky_assets.lib.labelling.labeller import Labeller, LabellingRun, Post
from bsky_assets.llm import store
from bsky_assets.llm.batches import BatchLabelling, BatchTotals
from bsky_assets.llm.client import COMPATIBLE_LABELER, LLMTaskClient, PostLabel
from bsky_assets.llm.client import Post as Prompted
from bsky_assets.llm.prices import cost_metadata
from bsky_assets.llm.task import LLMTask


def llm_label_set(
    task: LLMTask,
    labeler: str,
    model: str,
    posts_per_prompt: int,
    temperature: float,
    prompt_version: str | None = None,
) -> LabelSet:
    """An LLM label set: the server, the configured model, and what shapes the prompt."""
    return LabelSet(
        table=task.table_name,
        labeler=labeler,
        labeler_version=model,
        details={
            "prompt_version": prompt_version or task.prompt_version,
            "posts_per_prompt": posts_per_prompt,
            "temperature": temperature,
        },
    )


def label_set_of(task: LLMTask, client: LLMTaskClient) -> LabelSet:
    """The label set a client labels into: its service, the model that answers, the prompt."""
    return llm_label_set(
        task, client.labeler, client.served_model, client.settings.posts_per_prompt,
        client.settings.temperature,
    )  # fmt: skip


def label_row(task: LLMTask, result: PostLabel) -> dict[str, Any]:
    return {
        "uri": result.key,
        "was_successfully_labeled": result.ok,
        "reason": result.reason,
        "retryable": result.retryable,
        "attempts": result.attempts,
        **(result.values or task.empty_values()),
        "llm_model_name": result.model,
    }


class LLMRun(LabellingRun):
    def __init__(self, task: LLMTask, client: LLMTaskClient, extra: TaskMetadata) -> None:
        self.task = task
        self.client = client
        self.mode = settings.llm_mode()
        self.extra = extra
        self.label_set = label_set_of(task, client)
        self.provenance = {
            "prompt_version": task.prompt_version,
            "labeler": client.labeler,
            "llm_endpoint": client.endpoint,
        }
        self.not_sent_provenance = {
            **self.provenance,
            "labeler": NOT_SENT_LABELER,
            "llm_endpoint": None,
        }
        self.answered: Counter[str] = Counter()  # the model each answer named
        self.batch_totals = BatchTotals()
        self.sync_start = client.stats.as_dict()

    def legacy_label_set(self, row: dict[str, Any]) -> LabelSet:
        """Rows from before label sets: the current configuration adopts rows of its own server
        and prompt (the configured model was not recorded then); others form their own set."""
        if (row["labeler"], row["prompt_version"]) == (
            self.label_set.labeler,
            self.label_set.details["prompt_version"],
        ):
            return self.label_set
        model = row["llm_model_name"] or "unknown"
        return llm_label_set(self.task, row["labeler"], model, 10, 0.0, row["prompt_version"])

    def prepare(self, day: LabellingDay) -> None:
        """Label sets named after a server's address (before the endpoint became provenance)
        join the set of the model that answered them, so a day labelled through another port
        is never sent again."""
        for old_id, labeler, version, details in store.address_named_sets(day.db, day.spec):
            answered = store.models_that_answered(day.db, day.spec, old_id)
            model = answered[0] if len(answered) == 1 else version
            prompt = details.get("prompt_version", self.task.prompt_version)
            new = llm_label_set(
                self.task, COMPATIBLE_LABELER, model, details.get("posts_per_prompt", 10),
                details.get("temperature", 0.0), prompt,
            )  # fmt: skip
            endpoint = labeler.split("@", 1)[1]
            moved = store.merge_label_set(day.db, day.spec, old_id, new.row(), endpoint)
            day.log.info(
                f"label set {old_id} ({labeler}) is now {new.id} ({COMPATIBLE_LABELER}, "
                f"{model}): {moved} rows moved, the endpoint kept as provenance"
            )

    def describe(self) -> str:
        return (
            f"requesting model {self.client.settings.model} (served as "
            f"{self.client.served_model}) from {self.client.labeler} at {self.client.endpoint} "
            f"in {self.mode} mode; rows record the model that answers"
        )

    def before_sending(self, day: LabellingDay) -> None:
        """Settle what a dead run left, submit what is pending and not in flight (batch mode
        only), wait and collect; what the batches did not answer stays pending for the sync
        pass. A sync run with batches still open collects them first: they are paid for."""
        open_batches = store.any_open(day.db, self.label_set.id, day.day)
        if self.mode == "batch" or open_batches:
            if self.mode == "sync":
                day.log.warning(
                    "batches from an earlier batch-mode run of this day are still open: "
                    "collecting them first, so no post is paid for twice"
                )
            batches = BatchLabelling(day.db, self.client, self.label_set, day.day, day.log)
            batches.resume()
            unless = batches.in_flight_sql()
            to_submit = day.count_pending(unless=unless)
            if self.mode == "batch":
                day.log.info(f"batch mode: {to_submit} posts to submit as new batches")
            if to_submit and self.mode == "batch":
                assert day.lease is not None
                with contextlib.closing(day.pending_frames(unless=unless)) as frames:
                    posts = day.lease.guard(
                        (u, t) for f in frames for u, t in zip(f["uri"], f["text"], strict=True)
                    )
                    batches.submit(posts)
            assert day.writer is not None
            batches.wait_and_collect(day.writer, self._batch_row)
            day.db.analyze(day.spec)  # the pending query that follows joins on these rows
            self.batch_totals = batches.totals
            self.answered.update(store.batch_models(day.db, day.spec, self.label_set.id, day.day))
        self.sync_start = self.client.stats.as_dict()

    def _batch_row(self, label: PostLabel, text_hash: str) -> dict[str, Any]:
        return {**label_row(self.task, label), "text_sha256": text_hash}

    def label(self, posts: Iterable[Post]) -> Iterator[Sequence[PostLabel]]:
        for results in self.client.label(Prompted(post.key, post.text) for post in posts):
            self.answered.update(r.model for r in results if r.model)
            yield results

    def row(self, result: PostLabel) -> dict[str, Any]:
        return label_row(self.task, result)

    def metadata(self, day: LabellingDay) -> dict[str, Any]:
        stats = self.client.stats.as_dict()
        sync_tokens = (
            stats["prompt_tokens"] - self.sync_start["prompt_tokens"],
            stats["completion_tokens"] - self.sync_start["completion_tokens"],
        )
        batch_tokens = (self.batch_totals.prompt_tokens, self.batch_totals.completion_tokens)
        model = ", ".join(sorted(self.answered)) if self.answered else None
        assert day.writer is not None
        written = day.writer.rows_written
        seconds = day.seconds
        metadata = {
            "llm_model": model or "none (no post answered in this run)",
            "llm_model_requested": self.client.settings.model,
            "labeler": self.client.labeler,
            "llm_endpoint": self.client.endpoint,
            "prompt_version": self.task.prompt_version,
            "llm_mode": self.mode,
            "api_requests": stats["requests"],
            "retried_posts": stats["retried_posts"],
            "status_429": stats["status_429"],
            "status_5xx": stats["status_5xx"],
            **cost_metadata(model, sync_tokens, batch_tokens, written),
            "prompt_tokens_per_post": round(stats["prompt_tokens"] / written, 1) if written else 0,
            "achieved_requests_per_minute": round(stats["requests"] / seconds * 60, 1)
            if seconds
            else 0,
            "configured_requests_per_minute": self.client.settings.requests_per_minute,
            **self.extra(day, model),
        }
        if self.mode == "batch":
            metadata["batches"] = {
                k: v for k, v in vars(self.batch_totals).items() if not k.endswith("tokens")
            }
        return metadata


TaskMetadata = Callable[[LabellingDay, str | None], dict[str, Any]]


def _no_metadata(day: LabellingDay, model: str | None) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class LLMLabeller(Labeller):
    """An LLM task's label asset; `metadata` adds what the task's UI shows (e.g. shares)."""

    table: TableSpec = field(default=None)  # type: ignore[assignment]  # from the task
    description: str = ""
    task: LLMTask = field(default=None)  # type: ignore[assignment]
    kinds: frozenset[str] = frozenset({"postgres", "openai"})
    pool: str | None = "openai_api"
    resource_keys: frozenset[str] = frozenset({"llm"})
    metadata: TaskMetadata = _no_metadata

    @classmethod
    def of(cls, task: LLMTask, metadata: TaskMetadata = _no_metadata) -> LLMLabeller:
        preview = (*(f.name for f in task.fields), "llm_model_name")
        return cls(
            table=task.table,
            description=task.description,
            task=task,
            preview_columns=preview,
            metadata=metadata,
        )

    def start(self, context: dg.AssetExecutionContext) -> LLMRun:
        return LLMRun(self.task, context.resources.llm.get_client(self.task), self.metadata)
