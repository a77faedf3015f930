"""Google's batch wire format (multipart/mixed of embedded HTTP requests), server side.

Parsed with the email package's compat32 policy, as googleapiclient itself parses batches: the
HTTP policy's header registry costs several times more. A part that is not an embedded HTTP
request is a `MalformedBatch` (answered 400), never a server error.
"""

from __future__ import annotations

import email.parser
import json
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit


class MalformedBatch(ValueError):
    """The body is not a batch of HTTP requests."""


@dataclass(frozen=True)
class BatchPart:
    content_id: str
    target: SplitResult
    body: bytes
    header_key: str | None = None  # the part's x-goog-api-key header

    @property
    def api_key(self) -> str | None:
        return self.header_key or (parse_qs(self.target.query).get("key") or [None])[0]

    def json(self) -> Any:
        return json_or_none(self.body)


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def parse_batch(content_type: str, body: bytes) -> list[BatchPart]:
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise MalformedBatch("Batch body must be multipart/mixed.")
    parts = []
    for part in message.get_payload():
        content_id = str(part.get("Content-ID", "")).replace("\r\n", "").replace("\n", "")
        inner = part.get_payload(decode=True) or b""
        head, separator, inner_body = inner.partition(b"\r\n\r\n")
        if not separator:
            head, separator, inner_body = inner.partition(b"\n\n")
        lines = head.decode("latin-1").splitlines()
        request_line = lines[0].strip().split(" ") if lines else []
        if len(request_line) < 2 or not request_line[1]:
            raise MalformedBatch("Each batch part must be an HTTP request.")
        key = next(
            (
                line.split(":", 1)[1].strip()
                for line in lines[1:]
                if line.lower().startswith("x-goog-api-key:")
            ),
            None,
        )
        parts.append(BatchPart(content_id, urlsplit(request_line[1]), inner_body, key))
    return parts


def format_batch_response(
    parts: list[BatchPart], answers: list[tuple[int, dict[str, Any]]]
) -> tuple[bytes, str]:
    """The multipart/mixed response body and its Content-Type."""
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks = []
    for part, (code, payload) in zip(parts, answers, strict=True):
        inner_json = json.dumps(payload)
        response_id = "<response-" + part.content_id.strip().lstrip("<").rstrip(">") + ">"
        chunks.append(
            f"--{boundary}\r\n"
            "Content-Type: application/http\r\n"
            f"Content-ID: {response_id}\r\n\r\n"
            f"HTTP/1.1 {code} {HTTPStatus(code).phrase}\r\n"
            "Content-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(inner_json.encode())}\r\n\r\n"
            f"{inner_json}\r\n"
        )
    chunks.append(f"--{boundary}--\r\n")
    return "".join(chunks).encode(), f"multipart/mixed; boundary={boundary}"
