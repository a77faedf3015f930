"""The queries the successor needs: history imports, its training rows, the embedding cache."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import polars as pl

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS
from bsky_assets.perspective.client import GOOGLE_LABELER
from bsky_assets.perspective.tables import PERSPECTIVE_LABELS
from bsky_assets.posts.tables import VALID_POSTS
from bsky_assets.successor.tables import (
    PERSPECTIVE_HISTORY,
    PERSPECTIVE_HISTORY_IMPORTS,
    SUCCESSOR_EMBEDDINGS,
)


def file_was_imported(client: PostgresClient, file_sha256: str) -> bool:
    client.ensure_table(PERSPECTIVE_HISTORY_IMPORTS)
    rows = client.fetch_all(
        f"SELECT count(*) FROM {client.qualified(PERSPECTIVE_HISTORY_IMPORTS.name)} "
        "WHERE file_sha256 = %s",
        (file_sha256,),
    )
    return bool(rows[0][0])


def _exists(client: PostgresClient, table: str) -> bool:
    rows = client.fetch_all("SELECT to_regclass(%s)", (f"{client.schema}.{table}",))
    return rows[0][0] is not None


def imported_scores(
    client: PostgresClient, attributes: Sequence[str], schema: dict[str, pl.DataType]
) -> Iterator[pl.DataFrame]:
    """The imported history, one row per text: sha256, text, when, a score per attribute."""
    if not _exists(client, PERSPECTIVE_HISTORY.name):
        return iter(())
    picks = ", ".join(f"max(score) FILTER (WHERE attribute = '{a}') AS \"{a}\"" for a in attributes)
    return client.iter_query(
        f"SELECT text_sha256, min(text), min(scored_at), {picks} "
        f"FROM {client.qualified(PERSPECTIVE_HISTORY.name)} GROUP BY text_sha256",
        (),
        schema,
    )


def google_scores(
    client: PostgresClient, attributes: Sequence[str], schema: dict[str, pl.DataType]
) -> Iterator[pl.DataFrame]:
    """What Google's API scored in this database, one row per text (its newest score), joined
    to the text: sha256, text, when, a score per attribute."""
    if not (_exists(client, PERSPECTIVE_LABELS.name) and _exists(client, VALID_POSTS.name)):
        return iter(())
    scores = ", ".join(f'l."{ATTRIBUTE_COLUMNS[a]}"' for a in attributes)
    return client.iter_query(
        "SELECT DISTINCT ON (1) encode(sha256(convert_to(v.text, 'UTF8')), 'hex'), "
        f"v.text, l.label_timestamp, {scores} "
        f"FROM {client.qualified(PERSPECTIVE_LABELS.name)} l "
        f"JOIN {client.qualified(VALID_POSTS.name)} v "
        "ON v.partition_date = l.partition_date AND v.uri = l.uri "
        "WHERE l.labeler = %s AND l.was_successfully_labeled "
        "ORDER BY 1, l.label_timestamp DESC",
        (GOOGLE_LABELER,),
        schema,
    )


def cached_embeddings(
    client: PostgresClient, encoder_sha256: str, shas: Sequence[str]
) -> list[tuple[str, bytes]]:
    """(text sha256, float32 bytes) of the cached embeddings among `shas`."""
    return client.fetch_all(
        f"SELECT text_sha256, embedding FROM {client.qualified(SUCCESSOR_EMBEDDINGS.name)} "
        "WHERE encoder_sha256 = %s AND text_sha256 = ANY(%s)",
        (encoder_sha256, list(shas)),
    )
