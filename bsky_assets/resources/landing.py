"""The landing folder researchers drop preprocessed batches into."""

from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import Field

from bsky_assets import settings


class LandingFolder(dg.ConfigurableResource):
    """`<path>/<YYYY-MM-DD>/<batch_id>.jsonl[.gz]`; BSKY_LANDING_DIR by default."""

    path: str = Field(
        default_factory=lambda: str(settings.landing_dir()),
        description="Landing root (BSKY_LANDING_DIR, default <data dir>/landing).",
    )

    @property
    def root(self) -> Path:
        return Path(self.path)

    def day_dir(self, day: date) -> Path:
        return self.root / day.isoformat()
