"""A day's LLM labels through OpenAI's Batch API, resumable across dead runs.

Every step that costs money is recorded in Postgres before the next one starts:

1. a request file's row (`llm_batches`) and which post sits in which prompt (`llm_batch_requests`)
   are written while the file is built;
2. the uploaded file's id is recorded, then the batch is created and its id recorded.

A run that dies anywhere resumes from those rows: a file never uploaded is discarded (its posts
are pending again); an uploaded file whose batch id was not recorded is matched to its batch by
the metadata the batch carries (`bsky_request_file`), and only created if no batch has it; a
recorded batch is waited on. So no batch is ever paid for twice. Answers are matched by
`custom_id` and by the post id inside each answer, and validated exactly as synchronous ones;
whatever a batch did not answer well (failed or expired lines, invalid entries, refusals) stays
pending and goes through the synchronous API under its normal retry rules.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from openai.types import Batch

from bsky_assets import settings
from bsky_assets.lib.calls import chunks
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import WriteMode
from bsky_assets.lib.labelling.label_sets import LabelSet
from bsky_assets.lib.labelling.progress import duration
from bsky_assets.lib.labelling.writer import LabelWriter, text_sha256
from bsky_assets.llm import store
from bsky_assets.llm.batch import (
    TERMINAL,
    BatchApi,
    RequestFile,
    error_code,
    read_answer,
    request_line,
)
from bsky_assets.llm.client import LLMTaskClient, Post, PostLabel
from bsky_assets.llm.tables import LLM_BATCH_REQUESTS

MAPPING_ROWS_PER_WRITE = 20_000
LINES_PER_COLLECT = 1_000


@dataclass
class BatchTotals:
    batches_created: int = 0
    batches_resumed: int = 0
    batches_adopted: int = 0
    requests_submitted: int = 0
    posts_labelled: int = 0
    lines_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class BatchLabelling:
    """Submit a day's pending posts as batches, wait for them, write what they answered."""

    def __init__(
        self,
        db: PostgresClient,
        client: LLMTaskClient,
        label_set: LabelSet,
        day: date,
        log: Any,
        poll_seconds: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_requests_per_file: int | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.api = BatchApi(client)
        self.label_set = label_set
        self.day = day
        self.log = log
        self.poll_seconds = (
            settings.llm_batch_poll_seconds() if poll_seconds is None else poll_seconds
        )
        self.sleep = sleep
        self.max_requests_per_file = max_requests_per_file
        self.work_dir = work_dir or settings.data_dir() / "llm_batches"
        self.totals = BatchTotals()
        store.ensure_tables(db)

    # -- what is in flight -------------------------------------------------------------------------

    @staticmethod
    def any_open(db: PostgresClient, label_set: LabelSet, day: date) -> bool:
        """Whether the day has batches of this set not yet collected (from any earlier run)."""
        return store.any_open(db, label_set.id, day)

    def _open_rows(self) -> list[tuple]:
        return store.open_files(self.db, self.label_set.id, self.day)

    def in_flight_sql(self) -> str:
        """A condition on pending posts `v`: not already in one of this set's open batches."""
        return store.in_flight_condition(self.db)

    def resume(self) -> None:
        """Settle request files a dead run left: discard, adopt their batch, or create it."""
        for request_file, input_file_id, batch_id, created in self._open_rows():
            if batch_id:
                self.totals.batches_resumed += 1
                self.log.info(f"resuming the wait on batch {batch_id} ({request_file})")
                continue
            if input_file_id is None:  # never uploaded, so no batch can hold it
                self._discard(request_file, "was never uploaded")
                continue
            found = self.api.find(request_file, input_file_id, since=float(created) - 300)
            if found is not None:
                self.totals.batches_adopted += 1
                self.log.info(f"batch {found.id} was created for {request_file} before a run "
                              "died; waiting on it, not creating another")  # fmt: skip
                self._record_batch(request_file, found)
            else:
                self._create_batch(request_file, input_file_id)

    def _discard(self, request_file: str, why: str) -> None:
        self.log.info(f"discarding request file {request_file}: it {why}; its posts are pending")
        with contextlib.suppress(OSError):  # the local copy, if the dead run left one
            (self.work_dir / f"{request_file}.jsonl").unlink()
        store.forget_file(self.db, self.day, request_file)

    def _update(self, request_file: str, **values: Any) -> None:
        store.update_file(self.db, self.day, request_file, **values)

    def _record_batch(self, request_file: str, batch: Batch) -> None:
        counts = batch.request_counts.model_dump() if batch.request_counts else None
        self._update(
            request_file,
            batch_id=batch.id,
            status=batch.status,
            request_counts=json.dumps(counts),
        )

    def _create_batch(self, request_file: str, input_file_id: str) -> None:
        batch = self.api.create(input_file_id, request_file)
        self._record_batch(request_file, batch)  # at once: the next thing a crash hits is a wait
        self.totals.batches_created += 1
        self.log.info(f"created batch {batch.id} for {request_file}")

    # -- submitting ------------------------------------------------------------------------------

    def submit(self, posts: Iterable[tuple[str, str]]) -> None:
        """Write `(uri, text)` pending posts into request files (in `work_dir`, readable by this
        user only: they hold post text); upload each, create its batch."""
        work_dir = self.work_dir
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        prefix = uuid.uuid4().hex[:12]
        current: RequestFile | None = None
        mappings: list[dict[str, Any]] = []
        size = self.client.settings.posts_per_prompt
        for number, group in enumerate(chunks(posts, size)):
            custom_id = f"{prefix}-{number}"
            prompt = [Post(uri, text) for uri, text in group]
            line, ids = request_line(self.client, custom_id, prompt)
            if current is not None and not current.fits(line):
                self._finish_file(current, mappings)
                current, mappings = None, []
            if current is None:
                current = self._open_file(work_dir / f"{custom_id}.jsonl")
            current.append(line)
            hashes = {uri: text_sha256(text) for uri, text in group}
            mappings += [
                {"request_file": current.id, "custom_id": custom_id, "prompt_id": pid,
                 "uri": uri, "label_set": self.label_set.id, "text_sha256": hashes[uri]}
                for pid, uri in ids.items()
            ]  # fmt: skip
            if len(mappings) >= MAPPING_ROWS_PER_WRITE:
                self._write_mappings(mappings)
                mappings = []
        if current is not None:
            self._finish_file(current, mappings)

    def _open_file(self, path: Path) -> RequestFile:
        limits = {"max_requests": self.max_requests_per_file} if self.max_requests_per_file else {}
        request_file = RequestFile(path, **limits)
        store.start_file(self.db, self.day, request_file.id, self.label_set.id)
        return request_file

    def _write_mappings(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            frame = pl.DataFrame(rows, schema=LLM_BATCH_REQUESTS.polars_schema(list(rows[0])))
            self.db.write_partition(LLM_BATCH_REQUESTS, self.day, frame, WriteMode.INSERT_MISSING)

    def _finish_file(self, request_file: RequestFile, mappings: list[dict[str, Any]]) -> None:
        request_file.close()
        self._write_mappings(mappings)
        posts = store.posts_in_file(self.db, self.day, request_file.id)
        self._update(request_file.id, requests=request_file.requests, posts=posts,
                     status="written")  # fmt: skip
        input_file_id = self.api.upload(request_file.path)
        self._update(request_file.id, input_file_id=input_file_id, status="uploaded")
        self._create_batch(request_file.id, input_file_id)
        self.totals.requests_submitted += request_file.requests
        with contextlib.suppress(OSError):
            request_file.path.unlink()  # uploaded: the file on the server is the one that counts

    # -- waiting and collecting ------------------------------------------------------------------

    def wait_and_collect(self, writer: LabelWriter, row: Callable[[PostLabel, str], dict]) -> None:
        """Poll every open batch at a steady interval, logging progress, until each has ended;
        write each one's answers as soon as it ends."""
        started = time.monotonic()
        first_done: int | None = None
        while open_batches := [(r[0], r[2]) for r in self._open_rows() if r[2]]:
            waiting = total = done = failed = 0
            for request_file, batch_id in open_batches:
                batch = self.api.retrieve(batch_id)
                self._record_batch(request_file, batch)
                if batch.status in TERMINAL:
                    self._collect(request_file, batch, writer, row)
                    continue
                waiting += 1
                if batch.request_counts:
                    total += batch.request_counts.total
                    done += batch.request_counts.completed
                    failed += batch.request_counts.failed
            if not waiting:
                continue
            first_done = done if first_done is None else first_done
            elapsed = time.monotonic() - started
            rate = (done - first_done) / elapsed if elapsed > 0 else 0.0
            eta = duration((total - done - failed) / rate) if rate > 0 else "unknown"
            self.log.info(
                f"waiting on {waiting} batch(es): {done:,}/{total:,} requests completed, "
                f"{failed:,} failed, ETA {eta}"
            )
            self.sleep(self.poll_seconds)

    def _collect(
        self,
        request_file: str,
        batch: Batch,
        writer: LabelWriter,
        row: Callable[[PostLabel, str], dict],
    ) -> None:
        before = self.client.stats.as_dict()
        labelled = 0
        if batch.output_file_id:
            lines = self.api.lines(batch.output_file_id)
            for page in chunks(lines, LINES_PER_COLLECT):
                labelled += self._write_answers(request_file, batch.id, page, writer, row)
        failures: defaultdict[str, int] = defaultdict(int)
        if batch.error_file_id:
            for line in self.api.lines(batch.error_file_id):  # each line total: any shape
                failures[self.client.scrub(error_code(line))[:40]] += 1  # server text: scrubbed
        after = self.client.stats.as_dict()
        self.totals.prompt_tokens += after["prompt_tokens"] - before["prompt_tokens"]
        self.totals.completion_tokens += after["completion_tokens"] - before["completion_tokens"]
        self.totals.posts_labelled += labelled
        self.totals.lines_failed += sum(failures.values())
        store.close_file(self.db, self.day, request_file)
        failed = ", ".join(f"{code} {n}" for code, n in sorted(failures.items())) or "none"
        self.log.info(
            f"batch {batch.id} {batch.status}: {labelled:,} posts labelled; failed lines: "
            f"{failed} (unanswered posts go through the synchronous API)"
        )

    def _write_answers(
        self,
        request_file: str,
        batch_id: str,
        lines: list[dict[str, Any]],
        writer: LabelWriter,
        row: Callable[[PostLabel, str], dict],
    ) -> int:
        custom_ids = [str(line.get("custom_id")) for line in lines if isinstance(line, dict)]
        mapping = store.prompts_of(self.db, self.day, request_file, custom_ids)
        ids: defaultdict[str, dict[str, str]] = defaultdict(dict)
        hashes: dict[str, str] = {}
        for custom_id, prompt_id, uri, text_hash in mapping:
            ids[custom_id][prompt_id] = uri
            hashes[uri] = text_hash
        rows = []
        for line in lines:
            custom_id = str(line.get("custom_id")) if isinstance(line, dict) else ""
            if custom_id not in ids:  # not a request of this file: ignored, never guessed
                continue
            for label in read_answer(self.client, line, ids[custom_id]):
                rows.append({**row(label, hashes[label.key]), "llm_batch_id": batch_id})
        writer.write(rows)
        return len(rows)
