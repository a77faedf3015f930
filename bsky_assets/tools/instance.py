"""The project-local Dagster instance (`bsky-assets dev`, the demo): its dagster.yaml.

Local runs get what production has where it matters for a dead run: run monitoring, and one
retry of a failed run (a killed run is marked failed by dead_run_sensor, then retried).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bsky_assets import settings

LOCAL_INSTANCE: dict[str, Any] = {
    "telemetry": {"enabled": False},
    "run_monitoring": {"enabled": True, "start_timeout_seconds": 180, "poll_interval_seconds": 30},
    "run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False},
}


def ensure_local_instance(home: Path, overrides: dict[str, Any] | None = None) -> Path:
    """Write `home/dagster.yaml`, keeping whatever the user set and adding what is missing."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / "dagster.yaml"
    current = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    wanted = {**LOCAL_INSTANCE, **(overrides or {})}
    merged = {**wanted, **current} if not overrides else {**current, **wanted}
    if merged != current:
        path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return path


def use_project_dagster_home() -> str:
    """Point DAGSTER_HOME at the project-local folder unless the user chose one (commands that
    run or record anything in Dagster: demo, dev, hand-label imports)."""
    home = settings.dagster_home()
    ensure_local_instance(home)  # SQLite storage in home, run monitoring and retries, no telemetry
    settings.use_dagster_home(home)
    return str(home)
