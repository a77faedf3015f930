"""Keep API keys out of everything a run leaves behind: logs, metadata, rows, exceptions."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_KEY_PARAMETER = re.compile(r"([?&](?:key|api_key|access_token)=)[^&\s\"'<>]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+", re.IGNORECASE)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove secret values and anything shaped like a key parameter or bearer token."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _KEY_PARAMETER.sub(r"\1***", text)
    return _BEARER.sub(r"\1***", text)


class _ScrubFilter(logging.Filter):
    """Rewrites records of third-party loggers that print request URLs (googleapiclient logs
    `URL being requested: ...?key=...` at DEBUG)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = scrub(message, self.secrets)
        record.args = ()
        return True


_FILTER = _ScrubFilter()
LEAKY_LOGGERS = (
    "googleapiclient.discovery",
    "googleapiclient.http",
    "googleapiclient.model",
    "httplib2",
    "openai",
    "openai._base_client",
    "httpx",
    "httpcore",
)


def protect_logs(secret: str | None) -> None:
    """Scrub `secret` (and key-shaped URL parameters) from the loggers of our HTTP clients."""
    if secret:
        _FILTER.secrets.add(secret)
    for name in LEAKY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
