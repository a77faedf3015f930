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

from bsky_assets.perspective.attributes import COLUMN_ALIASES, PROB_COLUMNS

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


def _col(name: str, pg_type: str, dtype: pl.DataType, **kw: object) -> Column:
    return Column(name, pg_type, dtype, **kw)  # type: ignore[arg-type]


PARTITION = _col(PARTITION_COLUMN, "date", pl.Date(), nullable=False)

# fmt: off
PREPROCESSED_POSTS = TableSpec(
    name="preprocessed_posts",
    columns=(
        PARTITION,
        _col("uri", "text", pl.String(), nullable=False, description="the post's at:// URI"),
        _col("batch_id", "text", pl.String(), nullable=False,
             description="the landing batch the post was read from (newest wins)"),
        _col("source_file", "text", pl.String(), nullable=False),
        _col("line_number", "integer", pl.Int32(), nullable=False),
        _col("text", "text", pl.String(), nullable=False, description="the post's text"),
        _col("created_at", "timestamptz", UTC_TIMESTAMP, nullable=False,
             description="when the post says it was created (UTC)"),
        _col("preprocessing_timestamp", "timestamptz", UTC_TIMESTAMP, nullable=False,
             description="when the research group's preprocessing wrote the post (UTC)"),
        _col("cid", "text", pl.String(), description="the content id of the post's record"),
        _col("author_did", "text", pl.String(), description="the author's DID"),
        _col("author_handle", "text", pl.String(), description="the author's handle"),
        _col("indexed_at", "text", pl.String(), description="when the feed indexed the post"),
        _col("langs", "jsonb", pl.String(), description="the post's languages, a JSON list"),
        _col("reply_parent", "text", pl.String(), description="URI of the post replied to"),
        _col("reply_root", "text", pl.String(), description="URI of the thread's first post"),
        _col("like_count", "bigint", pl.Int64(), description="likes when preprocessed"),
        _col("reply_count", "bigint", pl.Int64(), description="replies when preprocessed"),
        _col("repost_count", "bigint", pl.Int64(), description="reposts when preprocessed"),
        _col("source", "text", pl.String(), description="where the group collected the post"),
    ),
    primary_key=(PARTITION_COLUMN, "uri"),
    keep_latest_by=("preprocessing_timestamp", "batch_id", "line_number"),
    indexes=(("uri",),),  # lets a day's check look up its uris in other days without a scan
)
# fmt: on

LANDING_REJECTS = TableSpec(
    name="landing_rejects",
    columns=(
        PARTITION,
        _col("source_file", "text", pl.String(), nullable=False),
        _col("line_number", "integer", pl.Int32(), nullable=False),
        _col("reason", "text", pl.String(), nullable=False),
        _col("detail", "text", pl.String()),
        _col("raw_line", "text", pl.String()),
    ),
    primary_key=(PARTITION_COLUMN, "source_file", "line_number"),
)

CLASSIFICATION_METADATA = TableSpec(
    name="classification_metadata",
    columns=(
        PARTITION,
        _col("uri", "text", pl.String(), nullable=False),
        _col("batch_id", "text", pl.String(), nullable=False),
        _col("preprocessing_timestamp", "timestamptz", UTC_TIMESTAMP, nullable=False),
        _col("text_length", "integer", pl.Int32(), nullable=False),
        _col("langs", "jsonb", pl.String()),
        _col("first_seen", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
    ),
    primary_key=(PARTITION_COLUMN, "uri"),
    write_mode=WriteMode.INSERT_MISSING,
    keep_latest_by=("preprocessing_timestamp",),
)

# fmt: off
VALID_POSTS = TableSpec(
    name="valid_posts",
    columns=(
        PARTITION,
        _col("uri", "text", pl.String(), nullable=False),
        _col("batch_id", "text", pl.String(), nullable=False),
        _col("text", "text", pl.String(), nullable=False),
        _col("langs", "jsonb", pl.String()),
        _col("is_valid", "boolean", pl.Boolean(), nullable=False,
             description="whether the post may be sent to the labellers"),
        _col("invalid_reason", "text", pl.String(),
             description="text_too_short or text_too_long when not valid"),
    ),
    primary_key=(PARTITION_COLUMN, "uri"),
)
# fmt: on

# -- labels: several labelers per post ------------------------------------------------------------
# A label row is keyed by (day, post, label set). A label set is one labeler configuration: for
# Perspective the labeler, its version and the attribute set; for the LLM the server, model,
# prompt version and prompt shape. Re-labelling a day with another set adds rows and keeps the old
# ones; `label_sets` describes each set, and the `*_preferred` views pick one row per post.

# fmt: off
LABEL_SET = _col("label_set", "text", pl.String(), nullable=False,
                 description="id of the labeller configuration that wrote the row (label_sets)")


def label_table(name: str, columns: tuple[Column, ...]) -> TableSpec:
    """A label table: the common columns, then the asset's own labels and provenance."""
    return TableSpec(
        name=name,
        columns=(
            PARTITION,
            _col("uri", "text", pl.String(), nullable=False, description="the post's at:// URI"),
            LABEL_SET,
            _col("was_successfully_labeled", "boolean", pl.Boolean(), nullable=False,
                 description="true: the labels are filled; false: see reason"),
            _col("reason", "text", pl.String(),
                 description="why the post has no labels (invalid, refused, failed)"),
            _col("retryable", "boolean", pl.Boolean(), nullable=False,
                 description="a failure the next run sends again"),
            _col("attempts", "integer", pl.Int32(), description="requests the post took"),
            _col("label_timestamp", "timestamptz", UTC_TIMESTAMP, nullable=False,
                 description="when the row was written (UTC)"),
            _col("text_sha256", "text", pl.String(),
                 description="sha256 of the exact text that was labelled"),
            *columns,
        ),
        primary_key=(PARTITION_COLUMN, "uri", "label_set"),
        write_mode=WriteMode.UPSERT,
        indexes=(("label_set",),),
    )


PERSPECTIVE_LABELS = label_table(
    "perspective_labels",
    (
        *(_col(c, "double precision", pl.Float64()) for c in PROB_COLUMNS),
        _col("unscored_attributes", "text", pl.String(),
             description="attributes the labeller could not score: their columns are null"),
        _col("labeler", "text", pl.String(), nullable=False,
             description="who scored the row: google-perspective-api, or a compatible "
             "server's declared scorer (e.g. a distilled successor)"),
        _col("labeler_version", "text", pl.String(), nullable=False,
             description="v1alpha1 for Google's API; the model id for a distilled successor"),
        _col("attribute_set", "text", pl.String(), nullable=False,
             description="id of the column → attribute mapping (perspective_attribute_sets)"
             + "".join(f"; {c} is filled from {a}" for c, a in COLUMN_ALIASES.items())),
    ),
)

# fmt: on

LABEL_SETS = TableSpec(
    name="label_sets",
    columns=(
        LABEL_SET,
        _col("label_table", "text", pl.String(), nullable=False),
        _col("labeler", "text", pl.String(), nullable=False),
        _col("labeler_version", "text", pl.String(), nullable=False),
        _col("emulated", "boolean", pl.Boolean(), nullable=False),
        _col("details", "jsonb", pl.String(), nullable=False),
        _col("first_used", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
    ),
    primary_key=("label_set",),
)

LABELER_PREFERENCES = TableSpec(
    name="labeler_preferences",
    columns=(
        _col("label_table", "text", pl.String(), nullable=False),
        _col("labeler_pattern", "text", pl.String(), nullable=False),
        _col("rank", "integer", pl.Int32(), nullable=False),
    ),
    primary_key=("label_table", "labeler_pattern"),
)

LABELLING_LEASES = TableSpec(
    # Who is labelling a day into a table right now: a row with a heartbeat, so a restart of the
    # database (which drops every session and advisory lock) does not free the day for a second
    # run while the first still has posts in flight. See lib/labelling/lease.py.
    name="labelling_leases",
    columns=(
        PARTITION,
        _col("label_table", "text", pl.String(), nullable=False),
        _col("holder", "text", pl.String(), nullable=False),
        _col("acquired_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
        _col("heartbeat_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
    ),
    primary_key=(PARTITION_COLUMN, "label_table"),
)

PERSPECTIVE_ATTRIBUTE_SETS = TableSpec(
    name="perspective_attribute_sets",
    columns=(
        _col("attribute_set", "text", pl.String(), nullable=False),
        _col("column_sources", "jsonb", pl.String(), nullable=False),
        _col("aliases", "jsonb", pl.String(), nullable=False),
    ),
    primary_key=("attribute_set",),
)

SOCIOPOLITICAL_EVALUATIONS = TableSpec(
    name="sociopolitical_evaluations",
    columns=(
        _col("evaluated_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
        _col("model", "text", pl.String(), nullable=False),
        _col("labeler", "text", pl.String(), nullable=False),
        _col("prompt_version", "text", pl.String(), nullable=False),
        _col("source", "text", pl.String(), nullable=False),
        _col("posts", "integer", pl.Int32(), nullable=False),
        _col("failed", "integer", pl.Int32(), nullable=False),
        _col("civic", "jsonb", pl.String(), nullable=False),
        _col("ideology", "jsonb", pl.String(), nullable=False),
        _col("label_set", "text", pl.String()),  # null: evaluated before label sets existed
        _col("hand_labels_sha256", "text", pl.String()),  # which hand labels, as a content hash
    ),
    primary_key=("evaluated_at", "labeler", "prompt_version"),
)

HAND_LABELS = TableSpec(
    name="hand_labels",
    columns=(
        # "uri:<uri>" or "text:<sha256>": one hand label per post, a re-import corrects it
        _col("hand_label_id", "text", pl.String(), nullable=False),
        _col("uri", "text", pl.String()),
        _col("text", "text", pl.String(), nullable=False),
        _col("is_sociopolitical", "boolean", pl.Boolean(), nullable=False),
        _col("political_ideology_label", "text", pl.String()),
        _col("source", "text", pl.String(), nullable=False),
        _col("imported_at", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
    ),
    primary_key=("hand_label_id",),
)

# -- OpenAI Batch API bookkeeping: which batch holds which posts, recorded before waiting ------

LLM_BATCHES = TableSpec(
    name="llm_batches",
    columns=(
        _col("partition_date", "date", pl.Date(), nullable=False),
        _col("request_file", "text", pl.String(), nullable=False),
        _col("label_set", "text", pl.String(), nullable=False),
        _col("requests", "integer", pl.Int32(), nullable=False),
        _col("posts", "integer", pl.Int32(), nullable=False),
        _col("input_file_id", "text", pl.String()),
        _col("batch_id", "text", pl.String()),
        _col("status", "text", pl.String(), nullable=False),
        _col("request_counts", "jsonb", pl.String()),
        _col("created_at", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
        _col("collected_at", "timestamptz", UTC_TIMESTAMP),
    ),
    primary_key=("partition_date", "request_file"),
)

LLM_BATCH_REQUESTS = TableSpec(
    name="llm_batch_requests",
    columns=(
        _col("partition_date", "date", pl.Date(), nullable=False),
        _col("request_file", "text", pl.String(), nullable=False),
        _col("custom_id", "text", pl.String(), nullable=False),
        _col("prompt_id", "text", pl.String(), nullable=False),
        _col("uri", "text", pl.String(), nullable=False),
        _col("label_set", "text", pl.String(), nullable=False),
        _col("text_sha256", "text", pl.String(), nullable=False),  # the text the prompt carries
    ),
    primary_key=("partition_date", "request_file", "custom_id", "prompt_id"),
    write_mode=WriteMode.INSERT_MISSING,
    indexes=(("partition_date", "label_set", "uri"),),
)

# -- the Perspective successor ---------------------------------------------------------------------

PERSPECTIVE_HISTORY = TableSpec(
    name="perspective_history",
    columns=(
        _col("text_sha256", "text", pl.String(), nullable=False),
        _col("attribute", "text", pl.String(), nullable=False),
        _col("score", "double precision", pl.Float64(), nullable=False),
        _col("text", "text", pl.String(), nullable=False),
        _col("scored_at", "timestamptz", UTC_TIMESTAMP),
        _col("source", "text", pl.String(), nullable=False),
        _col("imported_at", "timestamptz", UTC_TIMESTAMP, nullable=False, default_sql="now()"),
    ),
    primary_key=("text_sha256", "attribute"),
)

PERSPECTIVE_HISTORY_IMPORTS = TableSpec(
    name="perspective_history_imports",
    columns=(
        _col("file_sha256", "text", pl.String(), nullable=False),
        _col("source", "text", pl.String(), nullable=False),
        _col("imported_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
        _col("rows_read", "integer", pl.Int32(), nullable=False),
        _col("scores_added", "integer", pl.Int32(), nullable=False),
        _col("rejects", "jsonb", pl.String(), nullable=False),
        _col("column_map", "jsonb", pl.String(), nullable=False),
    ),
    primary_key=("file_sha256", "imported_at"),
)

SUCCESSOR_MODELS = TableSpec(
    name="perspective_successor_models",
    columns=(
        _col("model_id", "text", pl.String(), nullable=False),
        _col("created_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
        _col("path", "text", pl.String(), nullable=False),
        _col("method", "text", pl.String(), nullable=False),
        _col("tier", "text", pl.String()),  # fast | full (null: models from before the tiers)
        _col("training_rows", "integer", pl.Int32(), nullable=False),
        _col("evaluation", "jsonb", pl.String(), nullable=False),
    ),
    primary_key=("model_id",),
)

# Sentence embeddings of the successor's full tier, by encoder and text: nothing is encoded twice.
SUCCESSOR_EMBEDDINGS = TableSpec(
    name="successor_embeddings",
    columns=(
        _col("encoder_sha256", "text", pl.String(), nullable=False),
        _col("text_sha256", "text", pl.String(), nullable=False),
        _col("embedding", "bytea", pl.String(), nullable=False),  # float32 bytes, hex on COPY
    ),
    primary_key=("encoder_sha256", "text_sha256"),
)

SEED_BASELINE_LABELS = TableSpec(
    name="seed_baseline_labels",
    columns=(
        _col("uri", "text", pl.String(), nullable=False),
        _col("prob_toxic", "double precision", pl.Float64()),
        _col("label_timestamp", "timestamptz", UTC_TIMESTAMP),
    ),
    primary_key=("uri",),
)

PERSPECTIVE_AGREEMENT = TableSpec(
    name="perspective_agreement",
    columns=(
        PARTITION,
        _col("reference_label_set", "text", pl.String(), nullable=False),
        _col("other_label_set", "text", pl.String(), nullable=False),
        _col("column_name", "text", pl.String(), nullable=False),
        _col("reference_labeler", "text", pl.String(), nullable=False),
        _col("other_labeler", "text", pl.String(), nullable=False),
        _col("n", "integer", pl.Int32(), nullable=False),
        _col("spearman", "double precision", pl.Float64()),
        _col("pearson", "double precision", pl.Float64()),
        _col("mae", "double precision", pl.Float64()),
        _col("reference_positives", "integer", pl.Int32(), nullable=False),
        _col("auc", "double precision", pl.Float64()),
        # prevalence at 0.5 and agreement on it (null in rows written before they existed)
        _col("reference_share", "double precision", pl.Float64()),
        _col("other_share", "double precision", pl.Float64()),
        _col("kappa", "double precision", pl.Float64()),
    ),
    primary_key=(PARTITION_COLUMN, "reference_label_set", "other_label_set", "column_name"),
)

# -- exports: what each day's files hold and where they went (bsky_assets/exports/) --------------

EXPORT_FILES = TableSpec(
    name="export_files",
    columns=(
        PARTITION,
        _col("destination", "text", pl.String(), nullable=False),  # a URL, never credentials
        _col("dataset", "text", pl.String(), nullable=False),
        _col("fingerprint", "text", pl.String(), nullable=False),
        _col("rows", "bigint", pl.Int64(), nullable=False),
        _col("bytes", "bigint", pl.Int64(), nullable=False),
        _col("labelers", "jsonb", pl.String(), nullable=False),  # rows by labeller, emulated
        _col("exported_at", "timestamptz", UTC_TIMESTAMP, nullable=False),
    ),
    primary_key=(PARTITION_COLUMN, "destination", "dataset"),
)
