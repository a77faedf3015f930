"""The export's figure (P8): one day to Parquet, its wall time and peak memory, in its own process.

`bsky-assets bench` measures it on the day the graph has just labelled. Standalone,
`python -m bsky_assets.tools.bench.export N` writes a day of N posts with a Perspective and an LLM
label each straight into a throw-away schema by SQL (the label values are noise; the export's
work is the same: every column filled, ~128-character texts), then measures the export of it,
so the figure at 1,000,000 posts takes minutes, not the full graph's labelling.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bsky_assets import settings
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.embedded import to_libpq_url
from bsky_assets.lib.db.tables import quote
from bsky_assets.perspective.attributes import DEFAULT_ATTRIBUTE_SET, PROB_COLUMNS
from bsky_assets.perspective.tables import PERSPECTIVE_LABELS
from bsky_assets.posts.tables import PREPROCESSED_POSTS, VALID_POSTS
from bsky_assets.sociopolitical.task import SOCIOPOLITICAL
from bsky_assets.tools.bench.step import run_step

EXPORT_DAY = date(2024, 3, 4)


def run_export_bench(day: date, env: dict[str, str]) -> dict[str, Any]:
    """Export `day` (already labelled in env's schema) to a temporary folder, in a fresh process."""
    folder = Path(tempfile.mkdtemp(prefix="bsky-bench-export-"))
    try:
        metadata, rss, seconds = run_step(
            "label_exports", day, env | {"BSKY_EXPORT_DEST": str(folder)}
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    datasets = [k.removesuffix("_rows") for k in metadata if k.endswith("_rows") and "/" not in k]
    return {
        "posts": metadata["posts_labelled_rows"],
        "step_seconds": round(seconds, 1),  # process start and Dagster included
        "export_seconds": metadata["duration_seconds"],
        "peak_rss_mb": rss,
        "megabytes": round(sum(metadata[f"{d}_bytes"] for d in datasets) / 1e6, 1),
        "files": len(datasets),
    }


def seed_day(client: PostgresClient, day: date, posts: int) -> None:
    """`posts` posts of `day`, each with a Perspective, an LLM and a valence label, by SQL."""
    from bsky_assets.lib.labelling.label_sets import ensure_label_table
    from bsky_assets.llm.labeller import llm_label_set
    from bsky_assets.perspective.labeller import perspective_label_set
    from bsky_assets.valence.labeller import VALENCE_LABELS, ValenceRun

    perspective = perspective_label_set(
        "bsky-perspective-server/synthetic-hash (synthetic)", "1", DEFAULT_ATTRIBUTE_SET.id
    )
    llm = llm_label_set(SOCIOPOLITICAL, "openai-compatible", "gpt-4o-mini", 10, 0)
    valence = ValenceRun().label_set
    for spec in (PREPROCESSED_POSTS, VALID_POSTS):
        client.ensure_table(spec)
    labelled = (PERSPECTIVE_LABELS, SOCIOPOLITICAL.table, VALENCE_LABELS)
    for spec, label_set in zip(labelled, (perspective, llm, valence), strict=True):
        ensure_label_table(client, spec, label_set)
    q = client.qualified
    client.execute(
        f"INSERT INTO {q(PREPROCESSED_POSTS.name)} (partition_date, uri, batch_id, source_file, "
        "line_number, text, created_at, preprocessing_timestamp, cid, author_did, author_handle, "
        "langs, like_count, reply_count, repost_count) SELECT %(day)s, "
        "'at://did:plc:a' || mod(i, 50000) || '/app.bsky.feed.post/' || i, 'b' || (i / 50000), "
        "'bench.jsonl', i, repeat(md5(i::text), 4), %(day)s::timestamptz + i * interval '80 ms', "
        "%(day)s::timestamptz + interval '1 day', md5(i::text), 'did:plc:a' || mod(i, 50000), "
        "'user' || mod(i, 50000) || '.bsky.social', '[\"en\"]', mod(i, 100), mod(i, 10), "
        "mod(i, 20) "
        "FROM generate_series(1, %(posts)s) i",
        {"day": day, "posts": posts},
    )
    client.execute(
        f"INSERT INTO {q(VALID_POSTS.name)} SELECT partition_date, uri, batch_id, text, langs, "
        f"true, NULL FROM {q(PREPROCESSED_POSTS.name)} WHERE partition_date = %s",
        (day,),
    )
    probs = ", ".join(quote(c) for c in PROB_COLUMNS)
    client.execute(
        f"INSERT INTO {q(PERSPECTIVE_LABELS.name)} (partition_date, uri, label_set, "
        "was_successfully_labeled, retryable, attempts, label_timestamp, text_sha256, "
        f"{probs}, labeler, labeler_version, attribute_set) SELECT partition_date, uri, %s, "
        "true, false, 1, now(), md5(uri), "
        + ", ".join("random()" for _ in PROB_COLUMNS)
        + f", %s, %s, %s FROM {q(VALID_POSTS.name)} WHERE partition_date = %s",
        (perspective.id, perspective.labeler, perspective.labeler_version,
         DEFAULT_ATTRIBUTE_SET.id, day),
    )  # fmt: skip
    client.execute(
        f"INSERT INTO {q(SOCIOPOLITICAL.table.name)} (partition_date, uri, label_set, "
        "was_successfully_labeled, retryable, attempts, label_timestamp, text_sha256, "
        "is_sociopolitical, political_ideology_label, llm_model_name, prompt_version, labeler) "
        "SELECT partition_date, uri, %s, true, false, 1, now(), md5(uri), random() < 0.3, "
        "(ARRAY['left', 'right', 'moderate', 'unclear'])[1 + (hashtext(uri) & 3)], "
        f"'bench-model', %s, %s FROM {q(VALID_POSTS.name)} WHERE partition_date = %s",
        (llm.id, SOCIOPOLITICAL.prompt_version, llm.labeler, day),
    )
    client.execute(
        f"INSERT INTO {q(VALENCE_LABELS.name)} (partition_date, uri, label_set, "
        "was_successfully_labeled, retryable, attempts, label_timestamp, text_sha256, "
        "valence_compound, valence_label, labeler, labeler_version) SELECT partition_date, uri, "
        "%s, true, false, 1, now(), md5(uri), 2 * random() - 1, 'neutral', %s, %s "
        f"FROM {q(VALID_POSTS.name)} WHERE partition_date = %s",
        (valence.id, valence.labeler, valence.labeler_version, day),
    )
    for spec in (PREPROCESSED_POSTS, VALID_POSTS, *labelled):
        client.analyze(spec)


def main(posts: int) -> None:
    from bsky_assets.lib.db.connection import resolve_database_url

    url = resolve_database_url()
    schema = f"bench_export_{int(time.time())}"
    client = PostgresClient(url, schema)
    try:
        started = time.monotonic()
        seed_day(client, EXPORT_DAY, posts)
        seeded = time.monotonic() - started
        with tempfile.TemporaryDirectory(prefix="bsky-bench-home-") as home:
            env = settings.without_secrets() | {
                "DATABASE_URL": to_libpq_url(url),
                "BSKY_DB_SCHEMA": schema,
                "DAGSTER_HOME": home,
            }
            figures = run_export_bench(EXPORT_DAY, env)
    finally:
        client.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
    print(json.dumps(figures | {"seed_seconds": round(seeded, 1)}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
