"""TokenBucket: Consul's rpc_rate / rpc_max_burst."""

from __future__ import annotations

import math

import pytest

from agent.client import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_unlimited_by_default() -> None:
    bucket = TokenBucket()
    assert bucket.unlimited
    assert all(bucket.allow() for _ in range(10_000))
    assert TokenBucket(math.inf, 0).allow()


def test_burst_then_refill_at_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.25  # half a token
    assert not bucket.allow()
    clock.now = 0.5  # one token
    assert bucket.allow()
    assert not bucket.allow()
    clock.now = 100.0  # refill is capped at the burst
    assert bucket.tokens() == 3.0
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]


def test_zero_rate_allows_only_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(0.0, 2, clock=clock)
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    clock.now = 1e6
    assert not bucket.allow()


def test_clock_going_backwards_adds_nothing() -> None:
    clock = Clock()
    clock.now = 10.0
    bucket = TokenBucket(1.0, 1, clock=clock)
    assert bucket.allow()
    clock.now = 5.0
    assert not bucket.allow()


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1), (math.nan, 1), (1.0, -1)])
def test_bad_settings_are_clear_errors(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rpc"):
        TokenBucket(rate, burst)
