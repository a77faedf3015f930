"""Progress of a labelling step: a line at start, at a steady interval, and at the end."""

import logging

from bsky_assets.lib.labelling.progress import Progress, duration, listen
from bsky_assets_tests.fake_clock import FakeClock


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_lines_come_at_the_interval_with_rate_and_eta() -> None:
    log = logging.getLogger("progress-test")
    log.setLevel(logging.INFO)
    log.addHandler(lines := Lines())
    clock = FakeClock()
    heard: list[int] = []
    stop = listen(lambda p: heard.append(p.done))
    try:
        progress = Progress("perspective_labels", 1_000, log, interval=30, clock=clock)
        for _ in range(10):  # 100 posts every 10 s: a line at 30 s, 60 s and 90 s
            clock.sleep(10)
            progress.advance(100)
        progress.finish()
    finally:
        stop()
    assert lines.lines[0] == "perspective_labels: 0/1,000 posts (0%), 0.0 posts/s, ETA unknown"
    assert lines.lines[1:4] == [
        "perspective_labels: 300/1,000 posts (30%), 10.0 posts/s, ETA 1m10s",
        "perspective_labels: 600/1,000 posts (60%), 10.0 posts/s, ETA 0m40s",
        "perspective_labels: 900/1,000 posts (90%), 10.0 posts/s, ETA 0m10s",
    ]
    assert (
        lines.lines[4]
        == "perspective_labels: 1,000/1,000 posts (100%), 10.0 posts/s, done in 1m40s"
    )
    assert heard == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1000]


def test_durations_read_like_a_person_would_say_them() -> None:
    assert duration(59.6) == "1m00s" and duration(3 * 3600 + 125) == "3h02m"
