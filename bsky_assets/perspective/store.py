"""The queries perspective_labels needs beyond the engine's (lib/labelling/store.py)."""

from __future__ import annotations

from datetime import date

from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import PERSPECTIVE_LABELS, quote
from bsky_assets.perspective.attributes import PROB_COLUMNS


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
