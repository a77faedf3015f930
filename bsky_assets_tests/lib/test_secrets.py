"""Keys never survive scrubbing, in text or in the HTTP clients' log records."""

import logging

from bsky_assets.lib.secrets import protect_logs, scrub

KEY = "fake-key-for-scrub-tests-0042"


def test_scrub_removes_the_key_and_anything_shaped_like_one() -> None:
    text = (
        f"GET https://example.test/v1?key={KEY}&x=1 failed; retried with "
        f"?api_key=other-secret and header Authorization: Bearer sk-abc.def_123; raw {KEY}"
    )
    cleaned = scrub(text, [KEY])
    assert KEY not in cleaned and "other-secret" not in cleaned and "sk-abc.def_123" not in cleaned
    assert "?key=***&x=1" in cleaned and "Bearer ***" in cleaned
    assert scrub("nothing secret here", [None, ""]) == "nothing secret here"


def test_protected_loggers_never_print_the_key(caplog) -> None:
    protect_logs(KEY)
    logger = logging.getLogger("googleapiclient.discovery")
    with caplog.at_level(logging.DEBUG, logger="googleapiclient.discovery"):
        logger.debug("URL being requested: POST https://x.test/batch?key=%s&alt=json", KEY)
    assert KEY not in caplog.text and "key=***" in caplog.text
