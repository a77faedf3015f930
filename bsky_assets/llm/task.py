"""An LLM labelling task, declared: what the model is told, what it answers, how it is checked.

A task is data: its instructions, and the fields each post's answer carries (a yes/no, or one of
a few categories), with the rule that ties them together. Everything else follows from that
declaration and is shared by every task: the strict JSON schema, the prompt version (a content
hash of everything the model sees besides the posts), the label table's columns, validation of
each answer entry (the same for the synchronous and the Batch API, and for hand labels), the
client, batch mode, label sets, evaluation against hand labels. A new task is one small module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import polars as pl

from bsky_assets.lib.db.tables import Column, TableSpec
from bsky_assets.lib.labelling.tables import label_table

USER_TEMPLATE = "Label each of these {count} posts.\n<posts>\n{posts}\n</posts>"
Values = dict[str, Any]


@dataclass(frozen=True)
class AnswerField:
    """One value the model gives per post; also a column of the task's label table."""

    name: str
    kind: Literal["boolean", "category"]
    categories: tuple[str, ...] = ()
    nullable: bool = False  # a category may be null (e.g. no lean for a non-political post)
    metric: str = ""  # how evaluations name it (stored key); default: the field's name
    shown_as: str = ""  # prefix of its evaluation metadata; default: `metric`
    positive: str = "yes"  # a boolean's true class, as evaluations name it ("sociopolitical")
    description: str | None = None  # what the answer means (the column's, in the dictionary)

    @property
    def metric_key(self) -> str:
        return self.metric or self.name

    @property
    def prefix(self) -> str:
        return self.shown_as or self.metric_key

    def schema(self) -> dict[str, Any]:
        if self.kind == "boolean":
            return {"type": "boolean"}
        choice = {"type": "string", "enum": list(self.categories)}
        return {"anyOf": [choice, {"type": "null"}]} if self.nullable else choice

    def column(self) -> Column:
        if self.kind == "boolean":
            return Column(self.name, "boolean", pl.Boolean(), description=self.description)
        return Column(self.name, "text", pl.String(), description=self.description)

    def read(self, value: Any) -> tuple[bool, Any]:
        """(valid, value) for a value from an answer."""
        if self.kind == "boolean":
            return isinstance(value, bool), value
        if value is None:
            return self.nullable, None
        return isinstance(value, str) and value in self.categories, value


# The columns every LLM label table adds after the task's own fields.
LLM_COLUMNS = (
    Column("llm_model_name", "text", pl.String(),
           description="the model that answered, as the server reported it"),
    Column("prompt_version", "text", pl.String(), nullable=False,
           description="hash of everything the model saw besides the posts (llm/task.py)"),
    Column("labeler", "text", pl.String(), nullable=False,
           description="the service that answered: openai-api or openai-compatible"),
    Column("llm_batch_id", "text", pl.String(),
           description="the OpenAI batch that answered; null when answered synchronously"),
    Column("llm_endpoint", "text", pl.String(),
           description="host[:port] of the server that answered (provenance, not identity)"),
)  # fmt: skip


@dataclass(frozen=True)
class LLMTask:
    """A labelling task for an OpenAI-compatible model."""

    name: str  # the asset and table are `<name>_labels`
    system_prompt: str
    fields: tuple[AnswerField, ...]
    description: str
    # Cross-field rule for an answer: normalised values, or the reason the entry is unusable.
    refine: Callable[[Values], Values | str] = field(default=lambda values: values)
    # The same for a hand label (stricter: a researcher's file is corrected, not normalised).
    hand_label_rule: Callable[[Values], str | None] = field(default=lambda values: None)
    hand_labels_table: str = ""  # default `<name>_hand_labels`
    user_template: str = USER_TEMPLATE

    @property
    def table_name(self) -> str:
        return f"{self.name}_labels"

    @cached_property
    def table(self) -> TableSpec:
        return label_table(self.table_name, (*(f.column() for f in self.fields), *LLM_COLUMNS))

    @cached_property
    def response_format(self) -> dict[str, Any]:
        item = {
            "type": "object",
            "properties": {"id": {"type": "string"}} | {f.name: f.schema() for f in self.fields},
            "required": ["id", *(f.name for f in self.fields)],
            "additionalProperties": False,
        }
        schema = {
            "type": "object",
            "properties": {"labels": {"type": "array", "items": item}},
            "required": ["labels"],
            "additionalProperties": False,
        }
        return {
            "type": "json_schema",
            "json_schema": {"name": self.table_name, "strict": True, "schema": schema},
        }

    @cached_property
    def prompt_version(self) -> str:
        """A content hash of everything the model sees besides the posts: any change to the
        instructions, the schema or the message layout changes the version on every row."""
        canonical = json.dumps(
            [self.system_prompt, self.user_template, self.response_format], sort_keys=True
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def read_entry(self, entry: Mapping[str, Any]) -> Values | str:
        """An answer entry's values for the row, or why it cannot be used."""
        values: Values = {}
        for answer_field in self.fields:
            ok, value = answer_field.read(entry.get(answer_field.name))
            if not ok:
                problem = (
                    "invalid_entry"
                    if value is None or answer_field.kind == "boolean"
                    else ("out_of_vocabulary")
                )
                return f"{problem}: {answer_field.name}"
            values[answer_field.name] = value
        return self.refine(values)

    def empty_values(self) -> Values:
        return {f.name: None for f in self.fields}
