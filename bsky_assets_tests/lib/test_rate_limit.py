"""The token bucket, on a controllable clock."""

import threading

import pytest

from bsky_assets.lib.rate_limit import TokenBucket
from bsky_assets_tests.fake_clock import FakeClock


def test_paces_to_the_rate_after_the_initial_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, capacity=50, clock=clock, sleep=clock.sleep)
    grants = []
    for _ in range(20):  # 20 batches of 50 parts = 1,000 parts
        bucket.acquire(50)
        grants.append(clock.now)
    assert grants[0] == 0.0  # the first batch uses the initial burst
    # then exactly one 50-part batch every 0.5 s: 100 parts per second, never more
    assert grants[1:] == pytest.approx([0.5 * i for i in range(1, 20)])
    assert clock.now == pytest.approx((1_000 - 50) / 100)


def test_never_exceeds_capacity_plus_rate_in_any_window() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=5, clock=clock, sleep=clock.sleep)
    events = []
    for size in [1, 5, 3, 2, 5, 1, 4, 5, 5, 2] * 5:
        bucket.acquire(size)
        events.append((clock.now, size))
    for start, _ in events:
        for window in (0.5, 1.0, 3.0):
            granted = sum(n for t, n in events if start <= t < start + window)
            assert granted <= 5 + 10 * window + 1e-9


def test_idle_time_refills_only_up_to_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, capacity=3, clock=clock, sleep=clock.sleep)
    bucket.acquire(3)
    clock.now += 100  # a long idle period
    assert bucket.acquire(3) == 0  # a full burst is available again...
    assert bucket.acquire(1) == pytest.approx(1.0)  # ...but no more than capacity


def test_threads_share_one_budget() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, capacity=10, clock=clock, sleep=clock.sleep)
    threads = [
        threading.Thread(target=lambda: [bucket.acquire(10) for _ in range(10)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 400 tokens granted in total; the reservations add up to (400 - 10) / 100 s of debt
    assert bucket.waited_seconds >= (400 - 10) / 100 - 1e-9


def test_starting_empty_grants_nothing_before_the_rate_allows() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100, capacity=50, clock=clock, sleep=clock.sleep, initial_tokens=0)
    bucket.acquire(50)
    assert clock.now == pytest.approx(0.5)  # no initial burst: a quota's first minute is safe


def test_refuses_impossible_requests() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(rate=0)
    with pytest.raises(ValueError, match="cannot take"):
        TokenBucket(rate=1, capacity=5).acquire(6)


def test_try_acquire_never_waits_and_says_how_long_it_would() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, capacity=2, clock=clock, sleep=clock.sleep)
    assert bucket.try_acquire(2) is None
    assert bucket.try_acquire(1) == pytest.approx(0.5)  # refused: no debt taken
    clock.now += 0.5
    assert bucket.try_acquire(1) is None
    assert clock.sleeps == []
