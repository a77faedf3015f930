"""The tables an LLM task's evaluation keeps: its hand labels and every evaluation of it.

Built from the task's fields, so a new task gets both without a new spec. The sociopolitical
task's tables keep the names and columns they had (`hand_labels`, `sociopolitical_evaluations`
with `civic` and `ideology`): existing databases read on.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import polars as pl

from bsky_assets.lib.db.tables import UTC_TIMESTAMP, Column, TableSpec
from bsky_assets.llm.task import LLMTask


@cache
def hand_labels_table(task: LLMTask) -> TableSpec:
    """One hand label per post: `uri:<uri>` or `text:<sha256>` as its id."""
    fields = tuple(
        replace(f.column(), nullable=f.kind == "category" and f.nullable) for f in task.fields
    )
    return TableSpec(
        name=task.hand_labels_table or f"{task.name}_hand_labels",
        columns=(
            Column("hand_label_id", "text", pl.String(), nullable=False),
            Column("uri", "text", pl.String()),
            Column("text", "text", pl.String(), nullable=False),
            *fields,
            Column("source", "text", pl.String(), nullable=False),
            Column(
                "imported_at", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"
            ),
        ),
        primary_key=("hand_label_id",),
    )


@cache
def evaluations_table(task: LLMTask) -> TableSpec:
    """Every evaluation of the task, with its label set and which hand labels it used."""
    return TableSpec(
        name=f"{task.name}_evaluations",
        columns=(
            Column("evaluated_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
            Column("model", "text", pl.String(), nullable=False),
            Column("labeler", "text", pl.String(), nullable=False),
            Column("prompt_version", "text", pl.String(), nullable=False),
            Column("source", "text", pl.String(), nullable=False),
            Column("posts", "integer", pl.Int32(), nullable=False),
            Column("failed", "integer", pl.Int32(), nullable=False),
            *(Column(f.metric_key, "jsonb", pl.String(), nullable=False) for f in task.fields),
            Column("label_set", "text", pl.String()),  # null: evaluated before label sets
            Column("hand_labels_sha256", "text", pl.String()),  # which hand labels, as a hash
        ),
        primary_key=("evaluated_at", "labeler", "prompt_version"),
    )
