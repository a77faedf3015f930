"""Content hashes the successor keys things by: texts (history rows, embeddings, folds) and
files (history imports, encoder weights)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
