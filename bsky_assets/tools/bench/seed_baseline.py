"""The ceiling and the seed: a bare google-api-python-client loop, and the seed's own method."""

from __future__ import annotations

import time
from typing import Any

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.tools.bench.tables import SEED_BASELINE_LABELS


def bare_service(url: str):
    """A google-api-python-client service for the server at `url`, with nothing of ours around."""
    from googleapiclient.discovery import build_from_document

    from bsky_assets.perspective.discovery import discovery_document_for

    return build_from_document(discovery_document_for(url), developerKey="bench")


def analyze_body(text: str) -> dict[str, Any]:
    from bsky_assets.perspective.attributes import DEFAULT_ATTRIBUTES

    return {
        "comment": {"text": text},
        "requestedAttributes": {a: {} for a in DEFAULT_ATTRIBUTES},
        "languages": ["en"],
    }


def bare_ceiling(url: str, texts: list[str], batch_size: int = 50) -> float:
    """The bare google-api-python-client batch loop: posts/s, no pacing, no retries, no DB."""
    service = bare_service(url)
    started = time.monotonic()
    for start in range(0, len(texts), batch_size):
        batch = service.new_batch_http_request(callback=lambda *_: None)
        for text in texts[start : start + batch_size]:
            batch.add(service.comments().analyze(body=analyze_body(text)))
        batch.execute()
    return len(texts) / (time.monotonic() - started)


def seed_baseline(url: str, db: PostgresClient, posts: list[tuple[str, str]]) -> dict[str, float]:
    """The seed's method: 90-post batches, a fixed 1.05 s sleep after each, and inserts of 50
    rows each preceded by a re-read of every stored uri and a count before and after."""
    service = bare_service(url)
    db.ensure_table(SEED_BASELINE_LABELS)
    table = db.qualified(SEED_BASELINE_LABELS.name)
    started = time.monotonic()
    for start in range(0, len(posts), 90):
        chunk = posts[start : start + 90]
        scores: dict[str, float] = {}

        def keep(request_id, response, exception, scores=scores):
            if exception is None:
                toxicity = response["attributeScores"]["TOXICITY"]["summaryScore"]
                scores[request_id] = toxicity["value"]

        batch = service.new_batch_http_request(callback=keep)
        for uri, text in chunk:
            batch.add(service.comments().analyze(body=analyze_body(text)), request_id=uri)
        batch.execute()
        time.sleep(1.05)
        rows = list(scores.items())
        for insert_start in range(0, len(rows), 50):
            with db.engine.begin() as conn:
                cur = conn.connection.driver_connection.cursor()
                cur.execute(f"SELECT uri FROM {table}")
                existing = {r[0] for r in cur.fetchall()}
                cur.execute(f"SELECT count(*) FROM {table}")
                new = [r for r in rows[insert_start : insert_start + 50] if r[0] not in existing]
                cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, now())", new)
                cur.execute(f"SELECT count(*) FROM {table}")
    seconds = time.monotonic() - started
    return {"posts": len(posts), "seconds": seconds, "posts_per_s": len(posts) / seconds}
