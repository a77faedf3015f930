"""What the bench measures, and at what sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BenchConfig:
    posts: int = 5_000
    quota_rps: float = 100.0
    quota_posts: int = 3_000
    llm_latency_ms: float = 500.0
    llm_rpm: int = 1_200
    llm_posts: int = 3_000
    baseline_posts: int = 900
    ceiling_posts: int = 20_000
    write_rows: int = 200_000
    distill_posts: int = 100_000  # P6/P7: the successor's training history and scoring
    distill_full_posts: int = 2_000  # P6/P7 full tier (sentence encoder: ~10-60 posts/s/core)
    # The main day labelled by a fast-tier successor scored in the step (in-process transport)
    # instead of the synthetic scorer behind the local server.
    successor_labeller: bool = False
    # Label steps running at once on the main day. 1: one after another, so each stage's
    # figures (P2 against its bare ceiling) are its own. The cores: as Dagster's multiprocess
    # executor runs the job's ready steps (its max_concurrent default), the day's wall time.
    label_slots: int = 1
    ingest_only: bool = False  # P3 for a big day without hours of labelling: ingest steps only
