"""What a label asset's materialization shows about its rows: where they are, their columns,
a few of them with their text, and how complete they are.

Post text and scorer output are untrusted: a preview escapes everything markdown or HTML could
act on, and truncates, so no post can restyle the page, link anywhere, or run anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Any

import dagster as dg

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec
from bsky_assets.lib.labelling import store
from bsky_assets.lib.labelling.source import PostSource
from bsky_assets.lib.plots import INLINE_LIMIT

PREVIEW_ROWS = 5
PREVIEW_TEXT_CHARS = 48
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def markdown_cell(value: Any, limit: int = PREVIEW_TEXT_CHARS) -> str:
    """A value as inert markdown table cell text: one line, escaped, at most `limit` chars."""
    if value is None:
        return "∅"
    text = _CONTROL.sub(" ", str(value)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                c.pg_type,
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in spec.columns
        ]
    )


def preview(
    client: PostgresClient,
    spec: TableSpec,
    source: PostSource,
    label_set: str,
    day: date,
    columns: Sequence[str],
) -> dg.MetadataValue:
    """A few of the set's labelled rows of the day with their (truncated) text, as markdown."""
    rows = store.labelled_rows_with_text(
        client, spec, source, label_set, day, columns, PREVIEW_ROWS
    )
    header = ["post", "text", *columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        rkey = str(row[0]).rsplit("/", 1)[-1]  # the post's record key; the uri is in the table
        cells = [markdown_cell(rkey, 24), markdown_cell(row[1], PREVIEW_TEXT_CHARS)]
        cells += [markdown_cell(_rounded(v), 36) for v in row[2:]]
        line = "| " + " | ".join(cells) + " |"
        if sum(len(x) + 1 for x in lines) + len(line) > INLINE_LIMIT:
            break  # kept under the UI's inline limit: shown without a click
        lines.append(line)
    if not rows:
        lines.append("| " + " | ".join(["no labelled rows"] + [""] * (len(header) - 1)) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def table_metadata(
    client: PostgresClient,
    spec: TableSpec,
    source: PostSource,
    label_set: str,
    day: date,
    preview_columns: Sequence[str],
) -> dict[str, Any]:
    """Table name, column schema and a preview, under the keys the Dagster UI understands."""
    table = f"{client.schema}.{spec.name}"
    return {
        "dagster/table_name": table,
        "table": table,
        "dagster/column_schema": column_schema(spec),
        "preview": preview(client, spec, source, label_set, day, preview_columns),
        "read_one_row_per_post_from": f"{client.schema}.{spec.name}_preferred",
    }
