"""The data dictionary beside the data: README.md for people, schema.json for programs.

Both are built from the same dataset definitions the files are written from (column names and
Arrow types, meanings from the table specs and the Perspective attribute map), and the sunset
seam is computed from the rows exported: which labeller scored how many rows on which days, and
whether it is the real service or an emulation.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

from bsky_assets.exports import store
from bsky_assets.exports.datasets import (
    POSTS_LABELLED,
    PROBABILITY_SCALE,
    SEPARATOR,
    THRESHOLD,
    Dataset,
)
from bsky_assets.exports.destination import Destination
from bsky_assets.exports.writer import arrow_type
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import PARTITION_COLUMN
from bsky_assets.perspective.attributes import COLUMN_ALIASES
from bsky_assets.perspective.sunset import PERSPECTIVE_SUNSET

README_FILE = "README.md"
SCHEMA_FILE = "schema.json"


def _cell(value: Any) -> str:
    """Text for a markdown table cell (labeller names come from servers: nothing may break out)."""
    return " ".join(str(value).split()).replace("|", "\\|").replace("<", "&lt;")


def seam(client: PostgresClient, destination: Destination) -> dict[str, Any]:
    """Per label dataset: who labelled how many rows on which days, real or emulated, and the
    seam (the last day of the real service's rows, the first of an emulation's)."""
    labellers: dict[str, dict[tuple, dict[str, Any]]] = {}
    days: dict[str, dict[str, list]] = {}
    for day, dataset, entries in store.exported_labelers(client, destination.url):
        if dataset == POSTS_LABELLED:
            continue
        for entry in entries:
            if not entry["labelled"]:
                continue
            key = (entry["labeler"], bool(entry["emulated"]))
            found = labellers.setdefault(dataset, {}).setdefault(
                key, {"labeler": key[0], "emulated": key[1], "days": set(), "rows": 0}
            )
            found["days"].add(day)
            found["rows"] += entry["rows"]
            days.setdefault(day.isoformat(), {}).setdefault(dataset, []).append(
                {"labeler": key[0], "emulated": key[1], "rows": entry["rows"]}
            )
    summary: dict[str, Any] = {}
    for dataset, found in labellers.items():
        real = {d for f in found.values() if not f["emulated"] for d in f["days"]}
        emulated = {d for f in found.values() if f["emulated"] for d in f["days"]}
        summary[dataset] = {
            "labellers": [
                {
                    "labeler": f["labeler"],
                    "emulated": f["emulated"],
                    "first_day": min(f["days"]).isoformat(),
                    "last_day": max(f["days"]).isoformat(),
                    "days": len(f["days"]),
                    "labelled_rows": f["rows"],
                }
                for f in sorted(found.values(), key=lambda f: (min(f["days"]), f["labeler"]))
            ],
            "last_day_of_real_service": max(real).isoformat() if real else None,
            "first_day_emulated": min(emulated).isoformat() if emulated else None,
            "days_with_both": sorted(d.isoformat() for d in real & emulated),
        }
    return {"by_dataset": summary, "by_day": days}


def schema_document(
    destination: Destination, datasets: list[Dataset], seam_rows: dict[str, Any]
) -> dict[str, Any]:
    return {
        "generated_by": "bsky_assets",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "destination": destination.url,
        "format_version": store.FORMAT_VERSION,
        "layout": f"<dataset>/{PARTITION_COLUMN}=YYYY-MM-DD/part-0.parquet",
        "partitioning": {
            "column": PARTITION_COLUMN,
            "type": "date",
            "meaning": "the day (UTC) the post landed for; in the path (Hive style), not in "
            "the files",
        },
        "conventions": {
            "threshold": THRESHOLD,
            "probability_scale": PROBABILITY_SCALE,
            "aliases": dict(COLUMN_ALIASES),
            "perspective_sunset": PERSPECTIVE_SUNSET.isoformat(),
        },
        "datasets": {
            d.name: {
                "description": d.description,
                "path": f"{d.name}/{PARTITION_COLUMN}=YYYY-MM-DD/part-0.parquet",
                "columns": [
                    {
                        "name": c.name,
                        "type": str(arrow_type(c)),
                        "nullable": c.nullable,
                        "meaning": c.meaning,
                        "produced_by": c.produced_by,
                        "scale": c.scale,
                    }
                    for c in d.columns
                ],
            }
            for d in datasets
        },
        "seam": seam_rows,
    }


def _seam_markdown(seam_rows: dict[str, Any]) -> list[str]:
    lines = [
        f"Google's Perspective API ends after {PERSPECTIVE_SUNSET}. After it the same "
        "`prob_*` columns come from a successor distilled from the group's own Google-scored "
        "history: rows with `emulated = true` are never Google's. Computed from the exported "
        "rows (labelled rows only):",
        "",
        "| dataset | labeler | emulated | first day | last day | days | labelled rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, summary in seam_rows["by_dataset"].items():
        for f in summary["labellers"]:
            lines.append(
                f"| {dataset} | {_cell(f['labeler'])} | {str(f['emulated']).lower()} | "
                f"{f['first_day']} | {f['last_day']} | {f['days']} | {f['labelled_rows']:,} |"
            )
    lines.append("")
    for dataset, summary in seam_rows["by_dataset"].items():
        both = summary["days_with_both"]
        lines.append(
            f"- **{dataset}**: last day with the real service's rows: "
            f"{summary['last_day_of_real_service'] or 'none'}; first day with emulated rows: "
            f"{summary['first_day_emulated'] or 'none'}; days with both: {len(both)}"
            + (f" ({', '.join(both[:10])}{', …' if len(both) > 10 else ''})" if both else "")
        )
    lines += ["", "Per day and labeller: `seam.by_day` in schema.json."]
    return lines


def readme(document: dict[str, Any], datasets: list[Dataset]) -> str:
    root = document["destination"]
    text_note = next(
        (
            "Post text is included (`BSKY_EXPORT_TEXT` on)."
            if any(c.name == "text" for c in d.columns)
            else "Post text is not included (`BSKY_EXPORT_TEXT` off): join on `uri` to text "
            "you hold, or export with it on."
        )
        for d in datasets
        if d.name == POSTS_LABELLED
    )
    lines = [
        "# Bluesky post labels: data dictionary",
        "",
        f"Written by bsky_assets at {document['generated_at']} for `{root}`, with every export "
        "that changed a file; `schema.json` beside it holds the same, machine-readable. The "
        "column names and types below are the files' own.",
        "",
        "## Layout",
        "",
        f"`<dataset>/{PARTITION_COLUMN}=YYYY-MM-DD/part-0.parquet`: one file per dataset and "
        "day (UTC), Hive-partitioned, so `partition_date` comes from the path and is not in the "
        "files. A re-export replaces a day's file whole.",
        "",
        "| dataset | one row per | columns |",
        "|---|---|---|",
        *(f"| `{d.name}` | {_cell(d.description)} | {len(d.columns)} |" for d in datasets),
        "",
        "```sql",
        "-- DuckDB",
        f"SELECT labeler, count(*) FROM read_parquet('{root}/perspective_labels/*/*.parquet', "
        "hive_partitioning = 1) GROUP BY 1;",
        "```",
        "",
        "## Conventions",
        "",
        f"- **The 0.5 convention.** Every `prob_*` is thresholded at {THRESHOLD}: `>= "
        f"{THRESHOLD}` means the post has the attribute. Feeds rank by `prob_toxic` and "
        "`prob_constructive`.",
        f"- **Scale.** `prob_*`: {PROBABILITY_SCALE}.",
        *(
            f"- **`{column}` is an alias** of {attribute}: Perspective retired "
            "CONSTRUCTIVE_EXPERIMENTAL; the column is kept for continuity and repeats "
            "`prob_reasoning`."
            for column, attribute in COLUMN_ALIASES.items()
        ),
        "- **Provenance on every row.** `labeler`, `labeler_version`, `label_set`, `emulated` "
        "and `label_set_details` (attribute set; or prompt version, posts per prompt, "
        "temperature); the LLM's rows also carry `prompt_version` and `llm_model_name` (the "
        "model that answered). A row with `was_successfully_labeled = false` has no labels and "
        "says why in `reason`.",
        f"- **posts_labelled** prefixes every labeller's columns with its table and `{SEPARATOR}` "
        f"(`perspective_labels{SEPARATOR}prob_toxic`). {text_note} `uri` and `cid` are always "
        "there.",
        "",
        "## The Perspective sunset: whose scores are these",
        "",
        *_seam_markdown(document["seam"]),
    ]
    for d in datasets:
        lines += [
            "",
            f"## `{d.name}`",
            "",
            d.description[0].upper() + d.description[1:] + ".",
            "",
            "| column | type | meaning | produced by | scale |",
            "|---|---|---|---|---|",
        ]
        for c in document["datasets"][d.name]["columns"]:
            scale = "Perspective probability, 0.5 threshold" if c["scale"] else ""
            lines.append(
                f"| `{c['name']}` | {c['type']} | {_cell(c['meaning'])} | "
                f"{_cell(c['produced_by'])} | {scale} |"
            )
    return "\n".join(lines) + "\n"


def write(
    client: PostgresClient, destination: Destination, datasets: list[Dataset], staging: str
) -> None:
    """Rewrite README.md and schema.json, each atomically (see destination.atomic_write)."""
    document = schema_document(destination, datasets, seam(client, destination))
    contents = {
        SCHEMA_FILE: json.dumps(document, indent=2, default=_json_default),
        README_FILE: readme(document, datasets),
    }
    for name, text in contents.items():
        with destination.atomic_write(name, f"{staging}/{uuid.uuid4().hex}-{name}") as out:
            out.write(text.encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value))
