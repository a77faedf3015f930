"""The queries Perspective's assets need beyond the engine's (lib/labelling/store/)."""

from __future__ import annotations

from datetime import date

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import quote
from bsky_assets.perspective.attributes import PROB_COLUMNS
from bsky_assets.perspective.client import GOOGLE_LABELER
from bsky_assets.perspective.tables import PERSPECTIVE_LABELS


def rows_out_of_unit_interval(client: PostgresClient, day: date) -> int:
    """Rows of the day, any label set, with a prob_* score outside [0, 1] or not a number."""
    outside = " OR ".join(
        f"{quote(c)} < 0 OR {quote(c)} > 1 OR {quote(c)} = 'NaN'::float8" for c in PROB_COLUMNS
    )
    return int(
        client.fetch_all(
            f"SELECT count(*) FROM {client.qualified(PERSPECTIVE_LABELS.name)} "
            f"WHERE partition_date = %s AND ({outside})",
            (day,),
        )[0][0]
    )


def scoring_label_sets(client: PostgresClient, day: date) -> list[tuple[str, str]]:
    """The day's label sets that scored something: Google's first, then by id."""
    rows = client.fetch_all(
        f"SELECT label_set, min(labeler) FROM {client.qualified(PERSPECTIVE_LABELS.name)} "
        "WHERE partition_date = %s AND was_successfully_labeled GROUP BY 1",
        (day,),
    )
    return sorted(
        ((s, labeler) for s, labeler in rows), key=lambda r: (r[1] != GOOGLE_LABELER, r[0])
    )


def agreement_sums(
    client: PostgresClient, day: date, reference: str, other: str, column: str, threshold: float
) -> tuple:
    """(n, Spearman, Pearson, MAE, reference positives, rank sum of the other's scores over
    them, the other's positives, posts both call the same) over the posts both sets scored."""
    table = client.qualified(PERSPECTIVE_LABELS.name)
    sql = (
        "WITH j AS (SELECT a.{c} AS x, b.{c} AS y FROM {t} a JOIN {t} b "
        "ON b.partition_date = a.partition_date AND b.uri = a.uri "
        "WHERE a.partition_date = %(day)s AND a.label_set = %(a)s AND b.label_set = %(b)s "
        "AND a.was_successfully_labeled AND b.was_successfully_labeled "
        "AND a.{c} IS NOT NULL AND b.{c} IS NOT NULL), "
        "r AS (SELECT x, y, "
        "rank() OVER (ORDER BY x) + (count(*) OVER (PARTITION BY x) - 1) / 2.0 AS rx, "
        "rank() OVER (ORDER BY y) + (count(*) OVER (PARTITION BY y) - 1) / 2.0 AS ry FROM j) "
        "SELECT count(*), corr(rx, ry), corr(x, y), avg(abs(x - y)), "
        "count(*) FILTER (WHERE x >= %(threshold)s), "
        "sum(ry) FILTER (WHERE x >= %(threshold)s), "
        "count(*) FILTER (WHERE y >= %(threshold)s), "
        "count(*) FILTER (WHERE (x >= %(threshold)s) = (y >= %(threshold)s)) FROM r"
    ).format(c=f'"{column}"', t=table)
    return tuple(
        client.fetch_all(sql, {"day": day, "a": reference, "b": other, "threshold": threshold})[0]
    )
