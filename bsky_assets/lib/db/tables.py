"""Every table the project writes, as a spec: one module, no import-time registry.

A spec is the single source of a table's columns (Postgres and polars types), its primary key and
how a partition is written. Asset tables are named after their asset and partitioned by day;
side tables (label sets, attribute sets, evaluations, Perspective history, distilled models) are
not partitioned. Identifiers are validated once, here, so SQL built from specs never
interpolates anything a user typed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import dagster as dg
import polars as pl

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

PARTITION_COLUMN = "partition_date"


def validate_identifier(name: str) -> str:
    """Return `name` if it is a plain lower-case SQL identifier, else raise."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"invalid SQL identifier: {name!r}")
    return name


def quote(name: str) -> str:
    return f'"{validate_identifier(name)}"'


class WriteMode(StrEnum):
    """How a write of one partition lands in its table (always in one transaction)."""

    REPLACE = "replace"  # the partition's rows become exactly the written rows
    INSERT_MISSING = "insert_missing"  # rows whose key exists are left as they are
    UPSERT = "upsert"  # rows are inserted or overwritten by primary key


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    dtype: pl.DataType
    nullable: bool = True
    default_sql: str | None = None  # filled by Postgres when the frame does not carry it
    description: str | None = None  # what the column means to a researcher (exports' dictionary)


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    write_mode: WriteMode = WriteMode.REPLACE
    # On REPLACE/INSERT_MISSING, rows sharing a primary key are resolved by keeping the greatest
    # value of these columns (in order), e.g. the newest preprocessing_timestamp.
    keep_latest_by: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        validate_identifier(self.name)
        names = [validate_identifier(c.name) for c in self.columns]
        for key in (*self.primary_key, *self.keep_latest_by, *(c for i in self.indexes for c in i)):
            if key not in names:
                raise ValueError(f"{self.name}: unknown column {key!r}")
        if PARTITION_COLUMN in names and self.primary_key[0] != PARTITION_COLUMN:
            raise ValueError(f"{self.name}: primary key must start with {PARTITION_COLUMN}")

    @property
    def partitioned(self) -> bool:
        return self.primary_key[0] == PARTITION_COLUMN

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def polars_schema(self, columns: list[str] | None = None) -> dict[str, pl.DataType]:
        wanted = columns or self.column_names
        return {name: self.column(name).dtype for name in wanted}

    # -- carried by the asset that owns the table ---------------------------------------------

    def as_metadata(self) -> dict[str, Any]:
        """Definition metadata for the asset stored in this table: the spec itself (which the IO
        manager reads, so no registry maps assets to tables) and its column schema (which the
        UI shows)."""
        spec = {
            "name": self.name,
            "columns": [
                {
                    "name": c.name,
                    "type": c.pg_type,
                    "nullable": c.nullable,
                    "default": c.default_sql,
                    "description": c.description,
                }
                for c in self.columns
            ],
            "primary_key": list(self.primary_key),
            "write_mode": self.write_mode.value,
            "keep_latest_by": list(self.keep_latest_by),
            "indexes": [list(i) for i in self.indexes],
        }
        schema = dg.TableSchema(
            columns=[
                dg.TableColumn(
                    c.name,
                    c.pg_type,
                    description=c.description,
                    constraints=dg.TableColumnConstraints(nullable=c.nullable),
                )
                for c in self.columns
            ]
        )
        return {TABLE_SPEC_KEY: dg.MetadataValue.json(spec), "dagster/column_schema": schema}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> TableSpec:
        """The spec an asset declared with `as_metadata`."""
        value = metadata[TABLE_SPEC_KEY]
        spec = value.value if isinstance(value, dg.JsonMetadataValue) else value
        if isinstance(spec, str):
            spec = json.loads(spec)
        return cls(
            name=spec["name"],
            columns=tuple(
                Column(
                    c["name"],
                    c["type"],
                    POLARS_TYPES[c["type"]],
                    c["nullable"],
                    c["default"],
                    c.get("description"),
                )
                for c in spec["columns"]
            ),
            primary_key=tuple(spec["primary_key"]),
            write_mode=WriteMode(spec["write_mode"]),
            keep_latest_by=tuple(spec["keep_latest_by"]),
            indexes=tuple(tuple(i) for i in spec["indexes"]),
        )


UTC_TIMESTAMP = pl.Datetime("us", "UTC")
TABLE_SPEC_KEY = "bsky/table_spec"
# How each Postgres type travels in frames (the one mapping; every spec follows it).
POLARS_TYPES: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "text": pl.String(),
    "jsonb": pl.String(),
    "integer": pl.Int32(),
    "bigint": pl.Int64(),
    "boolean": pl.Boolean(),
    "double precision": pl.Float64(),
    "timestamptz": UTC_TIMESTAMP,
}


def col(name: str, pg_type: str, dtype: pl.DataType, **kw: object) -> Column:
    return Column(name, pg_type, dtype, **kw)  # type: ignore[arg-type]


PARTITION = col(PARTITION_COLUMN, "date", pl.Date(), nullable=False)

# fmt: off
# fmt: on

# fmt: off
# fmt: on

# -- labels: several labelers per post ------------------------------------------------------------
# A label row is keyed by (day, post, label set). A label set is one labeler configuration: for
# Perspective the labeler, its version and the attribute set; for the LLM the server, model,
# prompt version and prompt shape. Re-labelling a day with another set adds rows and keeps the old
# ones; `label_sets` describes each set, and the `*_preferred` views pick one row per post.

# fmt: off
# fmt: on

# -- OpenAI Batch API bookkeeping: which batch holds which posts, recorded before waiting ------

# -- the Perspective successor ---------------------------------------------------------------------

# -- exports: what each day's files hold and where they went (bsky_assets/exports/) --------------
