"""OpenAI's Files and Batch APIs, as the local server answers them.

Enough of the real behaviour to test a batch pipeline end to end with the official client: files
upload as multipart and download as JSONL; a batch validates its input file, reports growing
`request_counts` while in progress, and completes after a configurable delay, with an output file
(one line per answered request, in any order) and an error file (per-line failures, and
`batch_expired` for requests an expired batch never reached). Cancel and list (newest first,
`after`/`limit` pages) work as documented. Answers come from the same chat service as
`/v1/chat/completions`, so every fault option applies to batch lines too.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from bsky_assets.lib.stats import Stats

COMPLETION_WINDOW_SECONDS = 24 * 3600
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class BatchOptions:
    completion_delay_seconds: float = 2.0
    line_failure_share: float = 0.0  # lines answered with a 500 in the error file
    expire: bool = False  # batches expire at their deadline with half their requests done
    seed: int = 0


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    lines: list[dict[str, Any]]
    created_at: float
    deadline: float
    status: str = "in_progress"
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float | None = None

    def as_dict(self, now: float, delay: float) -> dict[str, Any]:
        total = len(self.lines)
        if self.status == "in_progress" and delay > 0:  # simulated progress, for progress logs
            done = int(total * min(1.0, (now - self.created_at) / delay))
            counts = {"total": total, "completed": done, "failed": 0}
        else:
            counts = {"total": total, "completed": self.completed, "failed": self.failed}
        finished = int(self.finished_at) if self.finished_at else None
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created_at),
            "in_progress_at": int(self.created_at),
            "expires_at": int(self.created_at + COMPLETION_WINDOW_SECONDS),
            "completed_at": finished if self.status == "completed" else None,
            "expired_at": finished if self.status == "expired" else None,
            "failed_at": finished if self.status == "failed" else None,
            "cancelled_at": finished if self.status == "cancelled" else None,
            "request_counts": counts,
            "metadata": self.metadata,
        }


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BatchService:
    """Files and batches held in memory; `answer` turns one request body into a completion."""

    def __init__(self, options: BatchOptions, answer: Any, stats: Stats) -> None:
        self.options = options
        self.answer = answer
        self.stats = stats
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._lock = threading.Lock()
        self._finishing = threading.Lock()
        self._random = random.Random(options.seed)

    # -- files -----------------------------------------------------------------------------------

    def upload(self, content_type: str, body: bytes) -> dict[str, Any]:
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        if not message.is_multipart():
            raise ApiError(400, "Expected multipart/form-data.")
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
            raise ApiError(400, "A file and purpose=batch are required.")
        filename, content = fields["file"]
        return self._store(filename or "upload.jsonl", "batch", content).as_dict()

    def _store(self, filename: str, purpose: str, content: bytes) -> _File:
        stored = _File(f"file-{uuid.uuid4().hex}", filename, purpose, content, int(time.time()))
        with self._lock:
            self._files[stored.id] = stored
        self.stats.add(files_stored=1)
        return stored

    def file(self, file_id: str) -> _File:
        with self._lock:
            found = self._files.get(file_id)
        if found is None:
            raise ApiError(404, f"No such File object: {file_id[:64]}")
        return found

    # -- batches ---------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("endpoint") != "/v1/chat/completions":
            raise ApiError(400, "Only /v1/chat/completions is supported.")
        if body.get("completion_window") != "24h":
            raise ApiError(400, "completion_window must be 24h.")
        source = self.file(str(body.get("input_file_id")))
        try:
            lines = [json.loads(line) for line in source.content.splitlines() if line.strip()]
            custom_ids = [line["custom_id"] for line in lines]
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "The input file is not valid batch JSONL.") from None
        if len(set(custom_ids)) != len(custom_ids):
            raise ApiError(400, "custom_id values must be unique within a batch.")
        now = time.time()
        batch = _Batch(
            id=f"batch_{uuid.uuid4().hex}",
            input_file_id=source.id,
            endpoint=body["endpoint"],
            metadata=body.get("metadata"),
            lines=lines,
            created_at=now,
            deadline=now + self.options.completion_delay_seconds,
        )
        with self._lock:
            self._batches[batch.id] = batch
        self.stats.add(batches_created=1, batch_requests=len(lines))
        return batch.as_dict(now, self.options.completion_delay_seconds)

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        now = time.time()
        with self._finishing:  # two pollers at the deadline finish it once
            if batch.status == "in_progress" and now >= batch.deadline:
                self._finish(batch)
        return batch.as_dict(now, self.options.completion_delay_seconds)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        with self._lock:
            if batch.status not in TERMINAL:
                batch.status, batch.finished_at = "cancelled", time.time()
        self.stats.add(batches_cancelled=1)
        return batch.as_dict(time.time(), self.options.completion_delay_seconds)

    def list(self, after: str | None, limit: int) -> dict[str, Any]:
        with self._lock:
            batches = sorted(self._batches.values(), key=lambda b: b.created_at, reverse=True)
        ids = [b.id for b in batches]
        start = ids.index(after) + 1 if after in ids else 0
        page = batches[start : start + limit]
        now, delay = time.time(), self.options.completion_delay_seconds
        return {
            "object": "list",
            "data": [b.as_dict(now, delay) for b in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": start + limit < len(batches),
        }

    def _batch(self, batch_id: str) -> _Batch:
        with self._lock:
            found = self._batches.get(batch_id)
        if found is None:
            raise ApiError(404, f"No such Batch object: {batch_id[:64]}")
        return found

    def _finish(self, batch: _Batch) -> None:
        """Answer the lines (half of them if the batch expires) and write the result files."""
        reached = len(batch.lines) // 2 if self.options.expire else len(batch.lines)
        output, errors = [], []
        for number, line in enumerate(batch.lines):
            request_id = f"batch_req_{uuid.uuid4().hex}"
            custom_id = line["custom_id"]
            if number >= reached:
                error = {"code": "batch_expired", "message": "This request could not be executed "
                         "before the completion window expired."}  # fmt: skip
                errors.append({"id": request_id, "custom_id": custom_id, "response": None,
                               "error": error})  # fmt: skip
                continue
            with self._lock:
                fails = self._random.random() < self.options.line_failure_share
            if fails:
                body = {"error": {"message": "The server had an error processing your request.",
                                  "type": "server_error"}}  # fmt: skip
                response = {"status_code": 500, "request_id": request_id, "body": body}
                errors.append({"id": request_id, "custom_id": custom_id, "response": response,
                               "error": None})  # fmt: skip
                continue
            body = self.answer(line.get("body") or {})
            response = {"status_code": 200, "request_id": request_id, "body": body}
            output.append({"id": request_id, "custom_id": custom_id, "response": response,
                           "error": None})  # fmt: skip
        with self._lock:
            self._random.shuffle(output)  # the real API does not keep input order either
        name = f"{batch.id}"
        if output:
            batch.output_file_id = self._jsonl(f"{name}_output.jsonl", output)
        if errors:
            batch.error_file_id = self._jsonl(f"{name}_error.jsonl", errors)
        batch.completed, batch.failed = len(output), len(errors)
        batch.status = "expired" if self.options.expire else "completed"
        batch.finished_at = time.time()
        self.stats.add(batch_lines_answered=len(output), batch_lines_failed=len(errors))

    def _jsonl(self, filename: str, rows: list[dict[str, Any]]) -> str:
        content = "".join(json.dumps(row) + "\n" for row in rows).encode()
        return self._store(filename, "batch_output", content).id
