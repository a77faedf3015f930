"""`bsky-assets bench` at a small N: a smoke test that it keeps working. It asserts no timings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bsky_assets_tests.conftest import subprocess_env

KEYS = {
    "p1_quota_share", "p1_429s", "p2_posts_per_s", "p2_ceiling_posts_per_s", "p3_peak_rss_mb",
    "p4_rows_per_s", "p5_rpm_share", "baseline_posts_per_s", "posts", "p6_distill_seconds",
    "p6_distill_peak_rss_mb", "p6_peak_rss_with_workers_mb", "p7_scoring_posts_per_s",
    "p8_export", "label_slots", "steps_sum_seconds", "total_seconds",
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_runs_end_to_end_and_reports_every_figure(database_url, tmp_path: Path) -> None:
    out = tmp_path / "benchmark.md"
    scratch = tmp_path / "tmp"  # the bench's temporary folders, to check that none is left
    scratch.mkdir()
    env = subprocess_env(database_url, BSKY_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(scratch))
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "bsky-assets"), "bench", "--posts", "400",
         "--llm-rpm", "600", "--llm-latency-ms", "100", "--distill-posts", "2000",
         "--distill-full-posts", "300", "--label-slots", "2", "--out", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=850,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(figures) >= KEYS
    assert figures["posts"] == 400
    assert set(figures["steps"]) == {
        "preprocessed_posts", "classification_metadata", "valid_posts", "perspective_labels",
        "sociopolitical_labels", "valence_labels",
    }  # fmt: skip
    assert figures["p2_posts_labelled"] > 0 and figures["baseline_posts"] > 0
    report = out.read_text()
    # the label steps ran side by side, as the job's executor runs them on 2 cores
    assert figures["label_slots"] == 2 and "label steps side by side" in report
    assert figures["steps_sum_seconds"] == pytest.approx(
        sum(s["seconds"] for s in figures["steps"].values()), abs=0.5
    )
    assert report.startswith("# bsky-assets bench: 400 posts")
    assert "P1 quota use" in report and "seed" in report and "P6 successor training" in report
    assert figures["p6_distill_posts"] == 2000
    assert 0 < figures["p8_export"]["posts"] <= 400 and figures["p8_export"]["files"] == 4
    assert "P8 export of the day to Parquet" in report
    assert figures["p6_full"]["posts"] == 300 and "P7 successor scoring, fast tier" in report
    assert figures["p7_in_process_posts_per_s"] > 0
    # P6's peaks are training's: the process tree's counts the process itself, and scoring
    # (which loads a second encoder for the full tier) is reported apart, never folded in
    assert figures["p6_peak_rss_with_workers_mb"] >= figures["p6_distill_peak_rss_mb"] > 0
    full = figures["p6_full"]
    assert full["peak_rss_with_scoring_mb"] >= full["peak_rss_mb"] > 0
    assert full["peak_rss_with_workers_mb"] >= full["peak_rss_mb"]
    # its landing folder, Dagster home and distilled models were removed
    assert not list(scratch.glob("bsky-bench-*"))
