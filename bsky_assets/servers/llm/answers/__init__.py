"""What the local server answers for each LLM task: a transparent heuristic per task, keyed by the
name of the task's response schema. Not an LLM, and the model name says so.

A task without a heuristic here still gets answers in its schema's shape (the first allowed value
of every field), so a new task runs end to end before anyone writes one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bsky_assets.servers.llm.answers import intergroup, sociopolitical

MODEL_NAME = "bsky-keyword-heuristic-not-an-llm"
VERSION = "1"

Answer = Callable[[str], dict[str, Any]]

HEURISTICS: dict[str, Answer] = {
    "sociopolitical_labels": sociopolitical.answer,
    "intergroup_labels": intergroup.answer,
}
