"""One step of the graph in a fresh process: `python -m bsky_assets.tools.bench.step ASSETS DAY`.

A fresh process per step is what makes its peak RSS (getrusage) the step's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from typing import Any


class StepProcess:
    """One step materializing in a fresh process. Its output goes to files, so steps running
    side by side never block on a full pipe."""

    def __init__(self, assets: str, day: date, env: dict[str, str]) -> None:
        self.assets = assets
        # Closed by result() or stop(), whichever ends the step.
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bsky_assets.tools.bench.step", assets, day.isoformat()],
            env=env,
            stdout=self.out,
            stderr=self.err,
        )
        self.seconds: float | None = None

    def done(self) -> bool:
        if self.seconds is None and self.process.poll() is not None:
            self.seconds = time.monotonic() - self.started
        return self.seconds is not None

    def result(self) -> StepResult:
        """Wait for the step: (metadata, peak RSS MB, seconds)."""
        self.process.wait()
        self.done()
        assert self.seconds is not None
        with self.out, self.err:
            if self.process.returncode:
                self.err.seek(0)
                raise RuntimeError(f"{self.assets} failed:\n{self.err.read().decode()[-3000:]}")
            self.out.seek(0)
            result = json.loads(self.out.read().decode().strip().splitlines()[-1])
        return result["metadata"], result["peak_rss_mb"], self.seconds

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.out.close()
        self.err.close()


StepResult = tuple[dict[str, Any], float, float]


def run_step(assets: str, day: date, env: dict[str, str]) -> StepResult:
    """Materialize assets (comma-separated keys) for one day in a fresh process: (metadata,
    peak RSS MB, seconds)."""
    return StepProcess(assets, day, env).result()


def run_side_by_side(
    steps: Sequence[str], day: date, env: dict[str, str], slots: int
) -> dict[str, StepResult]:
    """Steps that depend only on what is already materialized, at most `slots` at a time and
    started in the order given, as Dagster's multiprocess executor runs a job's ready steps
    (its max_concurrent defaults to the number of cores). Each keeps a process of its own, so
    its peak RSS is still its own."""
    waiting, running = list(steps), []
    results: dict[str, StepResult] = {}
    try:
        while waiting or running:
            while waiting and len(running) < max(slots, 1):
                running.append(StepProcess(waiting.pop(0), day, env))
            for step in [s for s in running if s.done()]:
                running.remove(step)
                results[step.assets] = step.result()
            time.sleep(0.05)
    finally:
        for step in running:  # a step failed: stop the others rather than leave them running
            step.stop()
    return {step: results[step] for step in steps}


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
