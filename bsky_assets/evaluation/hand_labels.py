"""Hand labels: what researchers decided for a sample of posts, the ground truth every prompt and
model of an LLM task is scored against.

A CSV names each post by `uri` (its text is looked up among landed posts) or by `text`, with one
column per field of the task (for the sociopolitical task `is_sociopolitical` and
`political_ideology_label`). One hand label per post: importing again adds nothing, and a
corrected file updates the labels it changes. A row that cannot be used is rejected with its line
number and reason; its text is never echoed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsky_assets.evaluation import store
from bsky_assets.evaluation.tables import hand_labels_table
from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.llm.task import AnswerField, LLMTask, Values
from bsky_assets.posts.validity import MAX_TEXT_BYTES

TRUE = {"true", "1", "yes", "y", "t", "civic", "sociopolitical"}
FALSE = {"false", "0", "no", "n", "f", "not civic", "not_civic", "not sociopolitical"}
MAX_EXAMPLES = 20


class HandLabelFileError(ValueError):
    """The file cannot be read as hand labels at all."""


@dataclass(frozen=True)
class HandLabel:
    text: str
    values: dict[str, Any]
    uri: str | None = None

    @property
    def id(self) -> str:
        if self.uri:
            return f"uri:{self.uri}"
        return "text:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class HandLabelReport:
    source: str
    rows_read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.rejects[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {line}: {reason}")


def _value(answer_field: AnswerField, raw: str) -> tuple[Any, str | None]:
    """A CSV cell as the field's value, or why it is not one."""
    cell = raw.strip().lower()
    if answer_field.kind == "boolean":
        if cell not in TRUE | FALSE:
            return None, f"{answer_field.name} is not true/false"
        return cell in TRUE, None
    if not cell:
        return None, None if answer_field.nullable else f"{answer_field.name} is missing"
    if cell not in answer_field.categories:
        return None, f"unknown {answer_field.name}"
    return cell, None


def _parse(
    task: LLMTask, row: dict[str, Any], line: int, report: HandLabelReport, texts: dict[str, str]
) -> HandLabel | None:
    uri = (row.get("uri") or "").strip() or None
    text = row.get("text") or ""
    values: Values = {}
    for answer_field in task.fields:
        value, problem = _value(answer_field, row.get(answer_field.name) or "")
        if problem:
            report.reject(line, problem)
            return None
        values[answer_field.name] = value
    problem = task.hand_label_rule(values)
    if problem:
        report.reject(line, problem)
        return None
    if not text.strip() and uri:
        if uri not in texts:
            report.reject(line, "uri not found among landed posts")
            return None
        text = texts[uri]
    if not text.strip():
        report.reject(line, "neither text nor a known uri")
        return None
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        report.reject(line, "text too long")
        return None
    return HandLabel(text, values, uri)


def read_hand_labels(
    task: LLMTask, path: Path, client: PostgresClient | None = None
) -> tuple[list[HandLabel], HandLabelReport]:
    """The usable hand labels of a CSV (later duplicates rejected) and the report of the rest.
    `client` resolves rows given by uri alone; without it such rows are rejected."""
    report = HandLabelReport(source=str(path))
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            header = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        message = f"{path}: not a readable UTF-8 CSV ({type(error).__name__})"
        raise HandLabelFileError(message) from None
    required = [f.name for f in task.fields if not (f.kind == "category" and f.nullable)]
    optional = [f.name for f in task.fields if f.name not in required]
    if rows and not ({"uri", "text"} & header and set(required) <= header):
        raise HandLabelFileError(
            f"{path}: needs a uri or text column and {', '.join(required)}"
            + (f" ({', '.join(optional)} optional)" if optional else "")
        )
    uris = [r["uri"].strip() for r in rows if (r.get("uri") or "").strip()]
    texts = store.landed_texts(client, uris) if client is not None and uris else {}
    labels: dict[str, HandLabel] = {}
    for line, row in enumerate(rows, start=2):
        report.rows_read += 1
        label = _parse(task, row, line, report, texts)
        if label is None:
            continue
        if label.id in labels:
            report.reject(line, "the same post again in this file")
            continue
        labels[label.id] = label
    return list(labels.values()), report


def import_hand_labels(task: LLMTask, client: PostgresClient, path: Path) -> HandLabelReport:
    """Upsert the file's usable hand labels; count what was added, updated or already known."""
    spec = hand_labels_table(task)
    client.ensure_table(spec)
    labels, report = read_hand_labels(task, path, client)
    ids = [label.id for label in labels]
    known = store.hand_labels_by_id(client, spec, task, ids) if labels else {}
    changed = []
    for label in labels:
        current = (label.text, *(label.values[f.name] for f in task.fields))
        if label.id not in known:
            report.added += 1
        elif known[label.id] != current:
            report.updated += 1
        else:
            report.unchanged += 1
            continue
        changed.append(
            {"hand_label_id": label.id, "uri": label.uri, "text": label.text, **label.values,
             "source": path.name}
        )  # fmt: skip
    client.insert_rows(spec, changed, on_conflict="update")
    return report


def load_hand_labels(task: LLMTask, client: PostgresClient) -> list[HandLabel]:
    spec = hand_labels_table(task)
    client.ensure_table(spec)
    names = [f.name for f in task.fields]
    return [
        HandLabel(text, dict(zip(names, values, strict=True)), uri)
        for text, uri, *values in store.all_hand_labels(client, spec, task)
    ]


def fingerprint(task: LLMTask, labels: list[HandLabel]) -> str:
    """A content hash of a set of hand labels: evaluations on the same set are comparable."""
    canonical = sorted((label.id, *(label.values[f.name] for f in task.fields)) for label in labels)
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:16]
