"""Which stored model a spec names: `latest` (the newest distil's served tier), `latest-fast`,
`latest-full`, a model id or a folder; unreadable or foreign folders are skipped, never fatal."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bsky_assets import settings
from bsky_assets.successor.model import FAST, FORMAT_VERSION, FULL

_logger = logging.getLogger(__name__)


def _manifest(path: Path) -> dict[str, Any] | None:
    """A model folder's manifest, or None (with a warning) when it is unreadable or of another
    format: a half-written or foreign folder never stops the others from serving."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        _logger.warning(f"skipping {path.parent}: unreadable model.json ({type(error).__name__})")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        _logger.warning(f"skipping {path.parent}: not a model this version can load")
        return None
    return manifest


def default_tier() -> str:
    from bsky_assets.successor.encoder import configured_encoder, embeddings_installed

    return FULL if embeddings_installed() and configured_encoder() else FAST


def resolve_model(spec: str, models_dir: Path | None = None) -> Path:
    """A model folder from `latest`, `latest-fast`, `latest-full`, a model id, or a path.

    `latest` is the newest distil's full tier when the embeddings extra is installed here and
    that distil has one, else its fast tier."""
    root = models_dir or settings.models_dir()
    if spec in ("latest", "latest-fast", "latest-full"):
        wanted = spec.removeprefix("latest-") if spec != "latest" else None
        found = []
        for path in root.glob("*/model.json"):
            manifest = _manifest(path)
            if manifest is not None:
                found.append((manifest.get("created_at", ""), manifest.get("tier"), path.parent))
        if not found:
            raise FileNotFoundError(
                f"no distilled model in {root}: run `bsky-assets perspective distill` first"
            )
        newest = max(created for created, _, _ in found)
        preferred = wanted or default_tier()
        tiers = {tier: folder for created, tier, folder in sorted(found) if created == newest}
        if wanted:
            candidates = [(c, f.name, f) for c, t, f in found if t == wanted]
            if not candidates:
                raise FileNotFoundError(f"no distilled model of the {wanted} tier in {root}")
            return max(candidates)[2]
        return tiers.get(preferred) or tiers.get(FAST) or next(iter(tiers.values()))
    candidate = Path(spec)
    if (candidate / "model.json").is_file():
        return candidate
    if (root / spec / "model.json").is_file():
        return root / spec
    raise FileNotFoundError(f"no distilled model {spec!r} (looked in {root} and at the path)")


def latest_model_exists(models_dir: Path | None = None) -> bool:
    try:
        resolve_model("latest", models_dir)
    except FileNotFoundError:
        return False
    return True
