"""The landing folder researchers drop preprocessed batches into."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import Field

from bsky_assets import settings


class LandingFolder(dg.ConfigurableResource):
    """`<path>/<YYYY-MM-DD>/<batch_id>.jsonl[.gz]`."""

    path: str | None = Field(
        default=None, description="Landing root; unset: BSKY_LANDING_DIR, else <data dir>/landing."
    )

    @property
    def root(self) -> Path:
        return Path(self.path) if self.path else settings.landing_dir()

    def day_dir(self, day: date) -> Path:
        return self.root / day.isoformat()
