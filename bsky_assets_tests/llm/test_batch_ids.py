"""Ids a Batch API server sends back go into rows and logs: only plain ids are accepted."""

import pytest

from bsky_assets.llm.batch import server_id


def test_plain_ids_pass_and_anything_else_fails_without_echoing_it() -> None:
    assert server_id("batch_abc-123", "batch") == "batch_abc-123"
    for hostile in ("sk-live key with spaces", "<b>x</b>", "../etc/passwd", "", None, "x" * 200):
        with pytest.raises(RuntimeError) as failure:
            server_id(hostile, "batch")
        assert str(failure.value) == "the server answered with an invalid batch id"
