"""OpenAI's Batch API for LLM labels: request files out, validated answers back.

A request file holds one line per prompt (the exact body the synchronous API would get), each
with a `custom_id`; OpenAI answers within 24 h at half the price. This module writes the files
within OpenAI's limits, uploads them, creates and finds batches, and reads the output file back
as labels validated exactly as synchronous answers are. It keeps no state: which batch holds
which posts is the database's job (llm/batches.py), so a killed run resumes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
from openai.types import Batch
from openai.types.chat import ChatCompletion

from bsky_assets.llm.client import (
    LLMAuthError,
    LLMTaskClient,
    Post,
    PostLabel,
    PromptRefused,
    RetryPrompt,
)

MAX_REQUESTS_PER_FILE = 50_000  # OpenAI's limits per batch input file
MAX_FILE_BYTES = 200 * 1000 * 1000
ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
REQUEST_FILE_KEY = "bsky_request_file"  # batch metadata naming the request file it came from
SERVER_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")  # file and batch ids we store and log


def server_id(value: object, what: str) -> str:
    """An id the server sent, if it is a plain id: it goes into rows and logs, so anything else
    (an echoed key, markup, a path) fails the run instead."""
    if isinstance(value, str) and SERVER_ID.fullmatch(value):
        return value
    raise RuntimeError(f"the server answered with an invalid {what} id")


def request_line(
    client: LLMTaskClient, custom_id: str, group: list[Post]
) -> tuple[bytes, dict[str, str]]:
    """One JSONL line for a prompt of `group` (the exact synchronous body), and its prompt ids."""
    ids, body = client.request_body(group)
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False).encode() + b"\n", ids


class RequestFile:
    """One batch input file being written, within OpenAI's per-file limits."""

    def __init__(
        self,
        path: Path,
        max_requests: int = MAX_REQUESTS_PER_FILE,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.path = path
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0
        self._handle = path.open("wb")

    @property
    def id(self) -> str:
        return self.path.stem

    def fits(self, line: bytes) -> bool:
        return self.requests < self.max_requests and self.bytes + len(line) <= self.max_bytes

    def append(self, line: bytes) -> None:
        self._handle.write(line)
        self.requests += 1
        self.bytes += len(line)

    def close(self) -> None:
        self._handle.close()


class BatchApi:
    """The Files and Batches calls, with the client's key scrubbing and auth errors."""

    def __init__(self, client: LLMTaskClient) -> None:
        self.client = client
        self.openai = client.openai

    def _call(self, name: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            message = self.client.scrub(f"{type(error).__name__}: {error.message}")
            raise LLMAuthError(message) from None
        except openai.APIStatusError as error:
            raise RuntimeError(
                self.client.scrub(f"{name}: HTTP {error.status_code}: {error.message}")
            ) from None

    def upload(self, path: Path) -> str:
        with path.open("rb") as handle:
            uploaded = self._call("files.create", self.openai.files.create, file=handle,
                                  purpose="batch")  # fmt: skip
        return server_id(uploaded.id, "file")

    def create(self, input_file_id: str, request_file: str) -> Batch:
        return self._checked(
            self._call(
                "batches.create",
                self.openai.batches.create,
                input_file_id=input_file_id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={REQUEST_FILE_KEY: request_file},
            )
        )

    def retrieve(self, batch_id: str) -> Batch:
        return self._checked(self._call("batches.retrieve", self.openai.batches.retrieve, batch_id))

    @staticmethod
    def _checked(batch: Batch) -> Batch:
        server_id(batch.id, "batch")
        for name in ("output_file_id", "error_file_id"):
            if getattr(batch, name) is not None:
                server_id(getattr(batch, name), "file")
        return batch

    def cancel(self, batch_id: str) -> Batch:
        return self._call("batches.cancel", self.openai.batches.cancel, batch_id)

    def find(self, request_file: str, input_file_id: str, since: float) -> Batch | None:
        """The batch created from this request file, if a run died before recording its id.
        Batches are listed newest first; listing stops at those created before `since` (when
        the request file was uploaded), which cannot be ours."""
        for batch in self._call("batches.list", self.openai.batches.list, limit=100):
            if batch.created_at < since:
                return None
            if (batch.metadata or {}).get(REQUEST_FILE_KEY) == request_file or (
                batch.input_file_id == input_file_id
            ):
                return self._checked(batch)
        return None

    def lines(self, file_id: str) -> Iterator[dict[str, Any]]:
        """A result file's lines, streamed (output files reach hundreds of MB). Only JSON
        objects: any other line (not JSON, a string, a list) is counted and passed over, so no
        line can stop a day."""
        with self.openai.files.with_streaming_response.content(file_id) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    parsed = json.loads(line)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    yield parsed
                else:
                    self.client.stats.add(malformed_json=1)


def error_code(line: dict[str, Any]) -> str:
    """What an error file's line says went wrong, whatever its shape: the error's code, else
    the response's status, else `unknown` (a bare string error is `error`)."""
    error = line.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str | int):
        return str(error["code"])
    if isinstance(error, str | int) and not isinstance(error, bool):
        return "error"
    response = line.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    if isinstance(status, int) and not isinstance(status, bool):
        return f"http_{status}"
    return "unknown"


def read_answer(
    client: LLMTaskClient, line: dict[str, Any], ids: dict[str, str]
) -> list[PostLabel]:
    """The labels one output line gives, validated as a synchronous answer would be.

    Only successes are returned: a post whose entry is invalid, or whose whole prompt failed
    (error status, truncated, malformed, refused), stays pending and is sent again through the
    synchronous API under its normal retry rules.
    """
    response = line.get("response") if isinstance(line, dict) else None
    if not isinstance(response, dict) or response.get("status_code") != 200:
        return []
    try:
        completion = ChatCompletion.model_validate(response.get("body"))
        answers, model = client.read_completion(completion, ids)
    except (ValueError, TypeError, RetryPrompt, PromptRefused):
        return []
    labels = []
    for answer in answers.values():
        if isinstance(answer, PostLabel):
            answer.attempts, answer.model = 1, model
            labels.append(answer)
    return labels
