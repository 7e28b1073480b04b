"""The reply budget: a token bucket on a hand-driven clock."""

from __future__ import annotations

import pytest

from sciot_mqtt.service.limits import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert sum(bucket.take() for _ in range(100)) == 20
    assert bucket.refused == 80
    clock.now += 0.5
    assert sum(bucket.take() for _ in range(100)) == 5
    clock.now += 1000
    assert sum(bucket.take() for _ in range(100)) == 20  # never more than the burst saved


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=5)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0.5)
