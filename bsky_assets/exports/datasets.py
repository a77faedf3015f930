"""The exported datasets and their columns: names, Postgres sources, meanings, who produced them.

Built from the table specs (a column's `description`) and the Perspective attribute map, so a new
labeller's columns are documented by its own spec. The partition column is not in the files:
it is the Hive path segment `partition_date=YYYY-MM-DD`, as DuckDB, pandas, polars, Spark and
Athena expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bsky_assets.exports.sources import POST_FIELDS, POSTS, VALID, VALIDITY_FIELDS
from bsky_assets.lib.db.tables import PARTITION_COLUMN, Column, TableSpec
from bsky_assets.lib.labelling.tables import label_table
from bsky_assets.perspective.attributes import ATTRIBUTE_COLUMNS, COLUMN_ALIASES

POSTS_LABELLED = "posts_labelled"
SEPARATOR = "__"  # posts_labelled: <label table>__<column>, so names never collide
# Per-row bookkeeping of the labelling runs: in each label table's dataset, not in the wide one.
OPERATIONAL = ("retryable", "attempts", "text_sha256")
THRESHOLD = 0.5
# Columns every label table shares (db/tables.label_table) and columns that say who labelled:
# what is left in a label table is what its labeller answered.
COMMON_LABEL_COLUMNS = frozenset(label_table("common_label_columns", ()).column_names)
PROVENANCE = frozenset({"labeler", "labeler_version", "attribute_set", "prompt_version",
                        "llm_model_name", "llm_batch_id", "unscored_attributes"})  # fmt: skip

# Perspective's own short definitions of its attributes (developers.perspectiveapi.com).
ATTRIBUTE_MEANINGS: dict[str, str] = {
    "TOXICITY": "a rude, disrespectful, or unreasonable comment that is likely to make people "
    "leave a discussion",
    "SEVERE_TOXICITY": "a very hateful, aggressive, disrespectful comment, very likely to make a "
    "user leave a discussion; less sensitive to milder toxicity such as positive uses of "
    "curse words",
    "IDENTITY_ATTACK": "negative or hateful comments targeting someone because of their identity",
    "INSULT": "insulting, inflammatory, or negative comment towards a person or a group of people",
    "PROFANITY": "swear words, curse words, or other obscene or profane language",
    "THREAT": "describes an intention to inflict pain, injury, or violence against an "
    "individual or group",
    "AFFINITY_EXPERIMENTAL": "references shared interests, motivations or outlooks between the "
    "author and another individual, group or entity",
    "COMPASSION_EXPERIMENTAL": "identifies with or shows concern, empathy, or support for the "
    "feelings or emotions of others",
    "CURIOSITY_EXPERIMENTAL": "attempts to clarify or ask follow-up questions to better "
    "understand another person or idea",
    "NUANCE_EXPERIMENTAL": "incorporates multiple points of view to give a fuller picture or "
    "useful detail and context",
    "PERSONAL_STORY_EXPERIMENTAL": "includes a personal experience or story as support for the "
    "statements made",
    "REASONING_EXPERIMENTAL": "makes specific or well-reasoned points for a fuller understanding "
    "of the topic, without disrespect or provocation",
    "RESPECT_EXPERIMENTAL": "shows deference or appreciation to others, or acknowledges the "
    "validity of another person",
    "ALIENATION_EXPERIMENTAL": "portrays someone as inferior, implies a lack of belonging, or "
    "frames the statement as us versus them",
    "FEARMONGERING_EXPERIMENTAL": "deliberately spreads fear to manipulate others' opinions or "
    "actions",
    "GENERALIZATION_EXPERIMENTAL": "asserts something to be true of all or the vast majority "
    "of a social group",
    "MORAL_OUTRAGE_EXPERIMENTAL": "anger, disgust, or frustration at people or entities who "
    "seem to violate the author's ethical values",
    "SCAPEGOATING_EXPERIMENTAL": "blames a person or entity for a wrong, often unfairly",
    "SEXUALLY_EXPLICIT": "references to sexual acts, body parts, or other lewd content",
    "FLIRTATION": "pickup lines, complimenting appearance, subtle sexual innuendo",
    "SPAM": "irrelevant and unsolicited commercial content",
}
PROBABILITY_SCALE = (
    "probability in [0, 1] on Perspective's scale: the estimated share of readers who would "
    f"perceive the attribute in the text, not its intensity; the group's convention: >= "
    f"{THRESHOLD} means the post has it; null: not scored (see unscored_attributes)"
)


@dataclass(frozen=True)
class ExportColumn:
    """One column of an exported file, and where it comes from in Postgres."""

    name: str
    relation: str  # SQL alias of the source relation in the dataset's query
    source: str  # the column in that relation
    pg_type: str
    nullable: bool
    meaning: str
    produced_by: str = ""
    scale: str = ""


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    columns: tuple[ExportColumn, ...]
    label_tables: tuple[TableSpec, ...]  # whose preferred rows it reads
    reads_posts: bool = False

    def file(self, day: str) -> str:
        """The day's file, relative to the destination's root."""
        return f"{self.name}/{PARTITION_COLUMN}={day}/part-0.parquet"


def _prob_column(column: str) -> tuple[str, str, str]:
    """(meaning, produced_by, scale) of a prob_* column, from the attribute map."""
    if column in COLUMN_ALIASES:
        attribute = COLUMN_ALIASES[column]
        produced = (
            f"Perspective {attribute} (an alias: Perspective retired CONSTRUCTIVE_EXPERIMENTAL, "
            f"so this column repeats {ATTRIBUTE_COLUMNS[attribute]})"
        )
    else:
        attribute = next(a for a, c in ATTRIBUTE_COLUMNS.items() if c == column)
        produced = f"Perspective {attribute}"
    return ATTRIBUTE_MEANINGS[attribute], produced, PROBABILITY_SCALE


def _label_value_source(spec: TableSpec) -> str:
    if "prompt_version" in spec.column_names:
        return f"{spec.name}: the LLM's answer to prompt `prompt_version`, model `llm_model_name`"
    return f"{spec.name}: the labeller named in `labeler`"


def _from_spec(spec: TableSpec, column: Column, relation: str, name: str) -> ExportColumn:
    meaning, produced_by, scale = column.description or "", "", ""
    if column.name in ATTRIBUTE_COLUMNS.values() or column.name in COLUMN_ALIASES:
        meaning, produced_by, scale = _prob_column(column.name)
    elif "label_set" in spec.column_names and column.name in _value_columns(spec):
        produced_by = _label_value_source(spec)
    return ExportColumn(
        name, relation, column.name, column.pg_type, column.nullable, meaning, produced_by, scale
    )


def _value_columns(spec: TableSpec) -> list[str]:
    """A label table's own columns: what its labeller answered (provenance aside)."""
    return [c for c in spec.column_names if c not in COMMON_LABEL_COLUMNS | PROVENANCE]


def _label_columns(spec: TableSpec, label: str, sets: str) -> list[ExportColumn]:
    """The preferred row's columns, then the provenance its label set adds."""
    columns = [
        _from_spec(spec, c, label, c.name) for c in spec.columns if c.name != PARTITION_COLUMN
    ]
    if "labeler_version" not in spec.column_names:
        columns.append(
            ExportColumn("labeler_version", sets, "labeler_version", "text", False,
                         "the label set's version: for an LLM labeller the model configured")
        )  # fmt: skip
    columns += [
        ExportColumn("emulated", sets, "emulated", "boolean", False,
                     "true: not the real service the columns are named after (e.g. a distilled "
                     "Perspective successor); emulated scores are never Google's"),
        ExportColumn("label_set_details", sets, "details", "jsonb", False,
                     "what else makes the label set (JSON): attribute set, or prompt version, "
                     "posts per prompt and temperature"),
    ]  # fmt: skip
    return columns


def label_dataset(spec: TableSpec) -> Dataset:
    return Dataset(
        name=spec.name,
        description=f"one row per post of the day from `{spec.name}_preferred`: the preferred "
        "labeller's row (a successful row before a failed one, then labeler_preferences, then "
        "the newest), with its provenance",
        columns=tuple(_label_columns(spec, "l", "s")),
        label_tables=(spec,),
    )


def prefixed(spec: TableSpec, column: str) -> str:
    """A label table's column in posts_labelled (and in the day's query)."""
    return column if column == "uri" else f"{spec.name}{SEPARATOR}{column}"


def _wide_columns(
    label_tables: Sequence[TableSpec], include_text: bool, operational: bool
) -> list[ExportColumn]:
    fields = [*POST_FIELDS, "text"] if include_text else list(POST_FIELDS)
    columns = [_from_spec(POSTS, POSTS.column(f), "p", f) for f in fields]
    columns += [_from_spec(VALID, VALID.column(f), "v", f) for f in VALIDITY_FIELDS]
    for i, spec in enumerate(label_tables):
        for column in _label_columns(spec, f"l{i}", f"s{i}"):
            if column.name == "uri" or (column.name in OPERATIONAL and not operational):
                continue
            columns.append(
                ExportColumn(prefixed(spec, column.name), column.relation, column.source,
                             column.pg_type, True, column.meaning, column.produced_by, column.scale)
            )  # fmt: skip
    return columns


def day_columns(label_tables: Sequence[TableSpec], include_text: bool) -> tuple[ExportColumn, ...]:
    """What the day's one query returns: posts_labelled's columns and each label table's
    bookkeeping columns, so every dataset of the day is cut from a single pass."""
    return tuple(_wide_columns(label_tables, include_text, operational=True))


def posts_labelled_dataset(label_tables: Sequence[TableSpec], include_text: bool) -> Dataset:
    text = "with its text" if include_text else "without text (BSKY_EXPORT_TEXT is off)"
    return Dataset(
        name=POSTS_LABELLED,
        description=f"one row per post of the day, {text}, and every labeller's preferred "
        f"columns, each prefixed with its table and {SEPARATOR} (null where the post has no row "
        "in that table)",
        columns=tuple(_wide_columns(label_tables, include_text, operational=False)),
        label_tables=tuple(label_tables),
        reads_posts=True,
    )


def all_datasets(label_tables: Sequence[TableSpec], include_text: bool) -> list[Dataset]:
    """One dataset per label table, and posts_labelled joining them all."""
    return [
        *(label_dataset(spec) for spec in label_tables),
        posts_labelled_dataset(label_tables, include_text),
    ]
