"""Keep API keys out of everything a run leaves behind: logs, metadata, rows, exceptions.

`scrub()` is applied to every string that came from a server or names a URL; `redact_url()`
removes credentials from any URL that is shown or stored; and once a client is built, every log
record of the process, whichever library or logger made it, is scrubbed as it is created (a
filter on named loggers misses libraries that log under other names, e.g. `httpx2`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

_KEY_PARAMETER = re.compile(
    r"([?&](?:key|api_key|apikey|access_token|token)=)[^&\s\"'<>]+", re.IGNORECASE
)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-~+/=]+", re.IGNORECASE)
_KEY_HEADER = re.compile(
    r"((?:x-goog-api-key|api-key)['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+", re.IGNORECASE
)
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.\-]*://)[^/\s@:]+(?::[^/\s@]*)?@", re.IGNORECASE)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove secret values (those given, and every one this process holds), key-shaped
    parameters and headers, bearer tokens, URL credentials."""
    for secret in (*secrets, *held_secrets()):
        if secret:
            text = text.replace(secret, "***")
    text = _KEY_PARAMETER.sub(r"\1***", text)
    text = _BEARER.sub(r"\1***", text)
    text = _KEY_HEADER.sub(r"\1***", text)
    return _USERINFO.sub(r"\1***@", text)


def redact_url(url: str) -> str:
    """The URL without user:password@ (for labelers, metadata and logs)."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def host_of(url: str) -> str:
    """host[:port] of a URL, never its credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_INSTALLED = False


MIN_SECRET_CHARS = 8  # real keys are far longer; a 1-character "key" would erase every letter


def held_secrets() -> tuple[str, ...]:
    """Every secret this process was given (protect_logs registers them)."""
    with _LOCK:
        return tuple(_SECRETS)


def contains_secret(text: str) -> bool:
    """Whether a string (from a server, to be stored or shown) carries a secret this process
    holds: such a string is refused, not stored scrubbed, since its shape is already wrong."""
    return any(secret in text for secret in held_secrets())


def protect_logs(secret: str | None) -> None:
    """Scrub `secret` (and anything key-shaped) from every log record this process creates."""
    global _INSTALLED
    with _LOCK:
        if secret and len(secret) >= MIN_SECRET_CHARS:
            _SECRETS.add(secret)
        if _INSTALLED:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: leave it to logging's own error path
                return record
            cleaned = scrub(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
            return record

        logging.setLogRecordFactory(factory)
        _INSTALLED = True
