"""One step of the graph in a fresh process: `python -m bsky_assets.tools.bench.step ASSETS DAY`.

A fresh process per step is what makes its peak RSS (getrusage) the step's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date
from typing import Any


def run_step(assets: str, day: date, env: dict[str, str]) -> tuple[dict[str, Any], float, float]:
    """Materialize assets (comma-separated keys) for one day in a fresh process: (metadata,
    peak RSS MB, seconds)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "bsky_assets.tools.bench.step", assets, day.isoformat()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = process.communicate()
    seconds = time.monotonic() - started
    if process.returncode:
        raise RuntimeError(f"{assets} failed:\n{err.decode()[-3000:]}")
    lines = out.decode().strip().splitlines()
    result = json.loads(lines[-1])
    return result["metadata"], result["peak_rss_mb"], seconds


def main(assets: str, day: str) -> None:
    import resource

    import dagster as dg

    from bsky_assets.definitions import build_definitions

    defs = build_definitions()
    job = defs.resolve_implicit_global_asset_job_def().get_subset(  # with their in-step checks
        asset_selection={dg.AssetKey(a) for a in assets.split(",")}
    )
    result = job.execute_in_process(
        partition_key=day,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    metadata = {}
    for event in result.get_asset_materialization_events():
        for key, value in event.step_materialization_data.materialization.metadata.items():
            if not isinstance(value, dg.MarkdownMetadataValue | dg.TableSchemaMetadataValue):
                metadata[key] = value.value
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"metadata": metadata, "peak_rss_mb": round(peak, 1)}, default=str))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
