"""Hand labels: what researchers decided for a sample of posts, the ground truth every prompt and
model is scored against.

A CSV names each post by `uri` (its text is looked up among landed posts) or by `text`, with
`is_sociopolitical` and `political_ideology_label`. One hand label per post: importing again
adds nothing, and a corrected file updates the labels it changes. A row that cannot be used is
rejected with its line number and reason; its text is never echoed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsky_assets.db.client import PostgresClient
from bsky_assets.db.tables import HAND_LABELS, PREPROCESSED_POSTS
from bsky_assets.sociopolitical.task import IDEOLOGY_LABELS
from bsky_assets.validity import MAX_TEXT_BYTES

TRUE = {"true", "1", "yes", "y", "t", "civic", "sociopolitical"}
FALSE = {"false", "0", "no", "n", "f", "not civic", "not_civic", "not sociopolitical"}
MAX_EXAMPLES = 20


class HandLabelFileError(ValueError):
    """The file cannot be read as hand labels at all."""


@dataclass(frozen=True)
class HandLabel:
    text: str
    is_sociopolitical: bool
    political_ideology_label: str | None
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


def _parse(
    row: dict[str, Any], line: int, report: HandLabelReport, texts: dict[str, str]
) -> HandLabel | None:
    uri = (row.get("uri") or "").strip() or None
    text = row.get("text") or ""
    civic = (row.get("is_sociopolitical") or "").strip().lower()
    lean = (row.get("political_ideology_label") or "").strip().lower() or None
    if civic not in TRUE | FALSE:
        report.reject(line, "is_sociopolitical is not true/false")
        return None
    is_sociopolitical = civic in TRUE
    if lean is not None and lean not in IDEOLOGY_LABELS:
        report.reject(line, "unknown political_ideology_label")
        return None
    if is_sociopolitical and lean is None:
        report.reject(line, "sociopolitical without a political_ideology_label")
        return None
    if not is_sociopolitical and lean is not None:
        report.reject(line, "a political_ideology_label on a post that is not sociopolitical")
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
    return HandLabel(text, is_sociopolitical, lean, uri)


def read_hand_labels(
    path: Path, client: PostgresClient | None = None
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
    if rows and not ({"uri", "text"} & header and "is_sociopolitical" in header):
        raise HandLabelFileError(
            f"{path}: needs a uri or text column and is_sociopolitical "
            "(political_ideology_label optional)"
        )
    uris = [r["uri"].strip() for r in rows if (r.get("uri") or "").strip()]
    texts = _landed_texts(client, uris) if client is not None and uris else {}
    labels: dict[str, HandLabel] = {}
    for line, row in enumerate(rows, start=2):
        report.rows_read += 1
        label = _parse(row, line, report, texts)
        if label is None:
            continue
        if label.id in labels:
            report.reject(line, "the same post again in this file")
            continue
        labels[label.id] = label
    return list(labels.values()), report


def _landed_texts(client: PostgresClient, uris: list[str]) -> dict[str, str]:
    client.ensure_table(PREPROCESSED_POSTS)
    rows = client.fetch_all(
        f"SELECT DISTINCT ON (uri) uri, text FROM {client.qualified(PREPROCESSED_POSTS.name)} "
        "WHERE uri = ANY(%s) ORDER BY uri, partition_date DESC",
        (uris,),
    )
    return {uri: text for uri, text in rows}


def import_hand_labels(client: PostgresClient, path: Path) -> HandLabelReport:
    """Upsert the file's usable hand labels; count what was added, updated or already known."""
    client.ensure_table(HAND_LABELS)
    labels, report = read_hand_labels(path, client)
    known = {
        row[0]: (row[1], row[2], row[3])
        for row in client.fetch_all(
            "SELECT hand_label_id, text, is_sociopolitical, political_ideology_label "
            f"FROM {client.qualified(HAND_LABELS.name)} WHERE hand_label_id = ANY(%s)",
            ([label.id for label in labels],),
        )
    } if labels else {}  # fmt: skip
    changed = []
    for label in labels:
        current = (label.text, label.is_sociopolitical, label.political_ideology_label)
        if label.id not in known:
            report.added += 1
        elif known[label.id] != current:
            report.updated += 1
        else:
            report.unchanged += 1
            continue
        changed.append(
            {"hand_label_id": label.id, "uri": label.uri, "text": label.text,
             "is_sociopolitical": label.is_sociopolitical,
             "political_ideology_label": label.political_ideology_label, "source": path.name}
        )  # fmt: skip
    client.insert_rows(HAND_LABELS, changed, on_conflict="update")
    return report


def load_hand_labels(client: PostgresClient) -> list[HandLabel]:
    client.ensure_table(HAND_LABELS)
    rows = client.fetch_all(
        "SELECT text, is_sociopolitical, political_ideology_label, uri "
        f"FROM {client.qualified(HAND_LABELS.name)} ORDER BY hand_label_id"
    )
    return [HandLabel(*row) for row in rows]


def fingerprint(labels: list[HandLabel]) -> str:
    """A content hash of a set of hand labels: evaluations on the same set are comparable."""
    canonical = sorted(
        (label.id, label.is_sociopolitical, label.political_ideology_label) for label in labels
    )
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:16]
