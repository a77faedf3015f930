"""An OpenAI-compatible chat-completions server: the test double and the offline labeler.

`/v1/chat/completions` honours `response_format` json_schema (so `client.chat.completions.parse`
works) and answers the sociopolitical schema from the keyword heuristic, whose model name says it
is not an LLM. `/v1/models` lists it. Options add latency, a requests-per-minute limit answered
with 429 and `retry-after`, and faults: 5xx, malformed JSON, a missing or an extra id, truncation.
`/v1/files` and `/v1/batches` serve the Batch API (batches.py) from the same answers.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bsky_assets.lib.rate_limit import TokenBucket
from bsky_assets.lib.stats import Stats
from bsky_assets.llm.prompt import estimate_tokens
from bsky_assets.servers.http import (
    BackgroundServer,
    ConnectionLimits,
    GuardedHandler,
    QuietServer,
)
from bsky_assets.servers.llm import answers
from bsky_assets.servers.llm.batches import ApiError, BatchOptions, BatchService


@dataclass
class LLMServerOptions:
    latency_ms: float = 0.0
    requests_per_minute: int | None = None
    fault_5xx_share: float = 0.0
    fault_malformed_json_share: float = 0.0
    fault_missing_id_share: float = 0.0
    fault_extra_id_share: float = 0.0
    fault_truncation_share: float = 0.0
    refuse_containing: str | None = None  # refuse any prompt containing this text
    reject_containing: str | None = None  # answer 400 to any prompt containing this text
    shuffle_output: bool = True  # answers come back in a different order than the posts
    api_keys: tuple[str, ...] = ()  # if given, other bearer tokens get 401 invalid_api_key
    seed: int = 0
    batches: BatchOptions = field(default_factory=BatchOptions)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    max_upload_bytes: int = 200 * 1000 * 1000  # OpenAI's limit for a batch input file


def parse_posts(user_content: str) -> list[tuple[str, str]]:
    """Recover (id, text) pairs from a user message built by `build_messages`: the server labels
    exactly what the prompt carries. Lines are split on "\\n" only, the separator the client
    writes: `splitlines()` would also split inside a post at U+2028, U+2029 or U+0085."""
    start = user_content.find("<posts>\n")
    end = user_content.rfind("\n</posts>")
    if start < 0 or end < 0:
        return []
    posts = []
    for line in user_content[start + len("<posts>\n") : end].split("\n"):
        item = json.loads(line)
        posts.append((str(item["id"]), str(item["text"])))
    return posts


def instance_for_schema(schema: dict[str, Any]) -> Any:
    """A minimal instance of a JSON schema (for response formats other than ours)."""
    if "anyOf" in schema:
        return instance_for_schema(schema["anyOf"][0])
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        return {k: instance_for_schema(v) for k, v in (schema.get("properties") or {}).items()}
    return {"array": [], "string": "", "integer": 0, "number": 0.0, "boolean": False}.get(kind)


def _answer_for(response_format: dict[str, Any], schema: dict[str, Any]) -> answers.Answer:
    """The task's heuristic by its schema's name, else the schema's own first allowed values."""
    name = (response_format.get("json_schema") or {}).get("name")
    if name in answers.HEURISTICS:
        return answers.HEURISTICS[name]
    item = ((schema.get("properties") or {}).get("labels") or {}).get("items") or {}
    fields = {k: v for k, v in (item.get("properties") or {}).items() if k != "id"}
    return lambda text: {k: instance_for_schema(v) for k, v in fields.items()}


class ChatService:
    def __init__(self, options: LLMServerOptions) -> None:
        self.options = options
        self.stats = Stats()
        self._random = random.Random(options.seed)
        self._lock = threading.Lock()
        self.batches = BatchService(options.batches, self.complete, self.stats)
        rpm = options.requests_per_minute
        self._limit = TokenBucket(rpm / 60, capacity=max(rpm / 60, 1)) if rpm else None

    def chance(self, share: float) -> bool:
        with self._lock:
            return share > 0 and self._random.random() < share

    def retry_after(self) -> float | None:
        """None if the request may proceed, else seconds until it could (the RPM limit)."""
        return None if self._limit is None else self._limit.try_acquire(1)

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        prompt_text = "".join(str(m.get("content", "")) for m in messages)
        response_format = body.get("response_format") or {}
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        finish_reason = "stop"
        if "labels" in (schema.get("properties") or {}):
            answer = _answer_for(response_format, schema)
            entries = [{"id": pid, **answer(text)} for pid, text in parse_posts(user)]
            with self._lock:
                if self.options.shuffle_output:
                    self._random.shuffle(entries)
            if entries and self.chance(self.options.fault_missing_id_share):
                self.stats.add(injected_missing_id=1)
                entries.pop()
            if self.chance(self.options.fault_extra_id_share):
                self.stats.add(injected_extra_id=1)
                entries.append({"id": "p999", **answer("an answer for a post nobody sent")})
            content = json.dumps({"labels": entries})
        else:
            content = json.dumps(instance_for_schema(schema)) if schema else "OK"
        if self.chance(self.options.fault_malformed_json_share):
            self.stats.add(injected_malformed=1)
            content = content.replace('"', "'", 3) + "}"
        elif self.chance(self.options.fault_truncation_share):
            self.stats.add(injected_truncation=1)
            content = content[: len(content) // 2]
            finish_reason = "length"
        refusal = None
        marker = self.options.refuse_containing
        if marker and marker in user:
            self.stats.add(refusals=1)
            content, refusal = None, "I can't help with labelling that content."
        prompt_tokens = estimate_tokens(prompt_text)
        completion_tokens = estimate_tokens(content or refusal or "")
        self.stats.add(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answers.MODEL_NAME,
            "system_fingerprint": f"{answers.MODEL_NAME}-{answers.VERSION}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Handler(GuardedHandler):
    def error_payload(self, code: int, message: str) -> Any:
        return _error(message, "invalid_request_error")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        service = self.server.service
        if path == "/v1/models":
            model = {"id": answers.MODEL_NAME, "object": "model", "owned_by": "bsky_assets"}
            model["created"] = 0
            self.send_json(200, {"object": "list", "data": [model]})
        elif path == "/stats":
            if self._authorized():
                self.send_json(200, service.stats.snapshot())
        elif path.startswith(("/v1/files", "/v1/batches")):
            if self._authorized():
                self._batch_api("GET", path, b"")
        else:
            self.send_json(404, _error("Not found", "invalid_request_error"))

    def _authorized(self) -> bool:
        """Refuse, before any body is read, a bearer token this server does not accept."""
        keys = self.server.service.options.api_keys
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if keys and token not in keys:
            self.server.service.stats.add(status_401=1)
            message = "Incorrect API key provided. You can find your API key in your account."
            self.refuse(401, _error(message, "invalid_request_error", "invalid_api_key"))
            return False
        return True

    def _batch_api(self, method: str, path: str, raw: bytes) -> None:
        """/v1/files and /v1/batches (see batches.py), for an authorised request."""
        batches = self.server.service.batches
        parts = path.strip("/").split("/")[1:]  # without the "v1"
        query = parse_qs(urlsplit(self.path).query)
        try:
            if method == "POST" and parts == ["files"]:
                payload = batches.upload(self.headers.get("Content-Type", ""), raw)
            elif method == "GET" and len(parts) == 2 and parts[0] == "files":
                payload = batches.file(parts[1]).as_dict()
            elif method == "GET" and len(parts) == 3 and parts[::2] == ["files", "content"]:
                self.send_bytes(200, batches.file(parts[1]).content, "application/octet-stream")
                return
            elif method == "POST" and parts == ["batches"]:
                payload = batches.create(json.loads(raw or b"{}"))
            elif method == "GET" and parts == ["batches"]:
                limit = int((query.get("limit") or ["20"])[0])
                payload = batches.list((query.get("after") or [None])[0], max(1, min(limit, 100)))
            elif method == "GET" and len(parts) == 2 and parts[0] == "batches":
                payload = batches.retrieve(parts[1])
            elif method == "POST" and len(parts) == 3 and parts[::2] == ["batches", "cancel"]:
                payload = batches.cancel(parts[1])
            else:
                raise ApiError(404, "Not found")
        except ApiError as error:
            self.send_json(error.status, _error(error.message, "invalid_request_error"))
            return
        except (ValueError, TypeError):
            self.send_json(400, _error("Malformed request", "invalid_request_error"))
            return
        self.send_json(200, payload)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        service = self.server.service
        uploading = path == "/v1/files"
        if path == "/v1/chat/completions":
            service.stats.add(http_requests=1)
        if not self._authorized():
            return
        raw = self.read_body(service.options.max_upload_bytes if uploading else None)
        if raw is None:
            return
        if path == "/stats/reset":
            service.stats.reset()
            self.send_json(200, {"ok": True})
            return
        if path.startswith(("/v1/files", "/v1/batches")):
            self._batch_api("POST", path, raw)
            return
        if path != "/v1/chat/completions":
            self.send_json(404, _error("Not found", "invalid_request_error"))
            return
        wait = service.retry_after()
        if wait is not None:
            service.stats.add(status_429=1)
            self.send_json(
                429,
                _error(
                    "Rate limit reached for requests per minute", "requests", "rate_limit_exceeded"
                ),
                {
                    "retry-after": f"{wait:.3f}",
                    "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
                },
            )
            return
        if service.options.latency_ms:
            time.sleep(service.options.latency_ms / 1000)
        if service.chance(service.options.fault_5xx_share):
            service.stats.add(injected_5xx=1)
            self.send_json(503, _error("The server is overloaded", "server_error"))
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self.send_json(400, _error("Invalid JSON body", "invalid_request_error"))
            return
        marker = service.options.reject_containing
        if marker and marker in json.dumps(body.get("messages"), ensure_ascii=False):
            service.stats.add(status_400=1)
            message = "Invalid prompt: flagged as potentially violating the usage policy."
            self.send_json(400, _error(message, "invalid_request_error", "invalid_prompt"))
            return
        try:
            answer = service.complete(body)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            message = f"Malformed request: {type(error).__name__}"
            self.send_json(400, _error(message, "invalid_request_error"))
            return
        service.stats.add(completions=1)
        self.send_json(200, answer)


class LLMServer(BackgroundServer):
    """The OpenAI-compatible server, in a background thread or the foreground."""

    def __init__(
        self,
        options: LLMServerOptions | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.service = ChatService(options or LLMServerOptions())
        limits = self.service.options.limits
        super().__init__(QuietServer((host, port), _Handler, self.service, verbose, limits))

    @property
    def url(self) -> str:
        return f"http://{self._server.address}/v1"
