"""The queries evaluation needs: landed texts for hand labels given by uri, hand labels in and
out, and the newest evaluation of every label set."""

from __future__ import annotations

from typing import Any

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.db.tables import TableSpec, quote
from bsky_assets.llm.task import LLMTask
from bsky_assets.posts.tables import PREPROCESSED_POSTS


def landed_texts(client: PostgresClient, uris: list[str]) -> dict[str, str]:
    """The newest landed text of each uri (for hand labels given by uri alone)."""
    client.ensure_table(PREPROCESSED_POSTS)
    rows = client.fetch_all(
        f"SELECT DISTINCT ON (uri) uri, text FROM {client.qualified(PREPROCESSED_POSTS.name)} "
        "WHERE uri = ANY(%s) ORDER BY uri, partition_date DESC",
        (uris,),
    )
    return {uri: text for uri, text in rows}


def hand_labels_by_id(
    client: PostgresClient, spec: TableSpec, task: LLMTask, ids: list[str]
) -> dict[str, tuple]:
    """(text, *values) of the known hand labels among `ids`."""
    fields = ", ".join(quote(f.name) for f in task.fields)
    rows = client.fetch_all(
        f"SELECT hand_label_id, text, {fields} FROM {client.qualified(spec.name)} "
        "WHERE hand_label_id = ANY(%s)",
        (ids,),
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def all_hand_labels(client: PostgresClient, spec: TableSpec, task: LLMTask) -> list[tuple]:
    """(text, uri, *values) of every hand label, in id order."""
    fields = ", ".join(quote(f.name) for f in task.fields)
    return client.fetch_all(
        f"SELECT text, uri, {fields} FROM {client.qualified(spec.name)} ORDER BY hand_label_id"
    )


def latest_per_label_set(
    client: PostgresClient, spec: TableSpec, task: LLMTask
) -> list[dict[str, Any]]:
    """The newest evaluation of every label set (or, from before label sets, of every labeler
    and prompt version), with each field's headline figures."""
    headlines = []
    for field in task.fields:
        column = quote(field.metric_key)
        if field.kind == "boolean":
            headlines += [f"({column}->>'f1')::float", f"({column}->>'accuracy')::float"]
        else:
            headlines += [f"({column}->>'macro_f1')::float"]
    group = "coalesce(label_set, labeler || prompt_version)"
    rows = client.fetch_all(
        f"SELECT DISTINCT ON ({group}) label_set, model, prompt_version, posts, failed, "
        f"evaluated_at, hand_labels_sha256, {', '.join(headlines)} "
        f"FROM {client.qualified(spec.name)} ORDER BY {group}, evaluated_at DESC"
    )
    names = ["label_set", "model", "prompt_version", "posts", "failed", "evaluated_at",
             "hand_labels"]  # fmt: skip
    for field in task.fields:
        if field.kind == "boolean":
            names += [f"{field.prefix}_f1", f"{field.prefix}_accuracy"]
        else:
            names += [f"{field.prefix}_macro_f1"]
    return [dict(zip(names, row, strict=True)) for row in rows]
