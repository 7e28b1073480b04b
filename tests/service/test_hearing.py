"""The service's check that it hears itself, on a hand-driven clock."""

from __future__ import annotations

from sciot_mqtt.protocol import Ping
from sciot_mqtt.service.hearing import HearingCheck


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_deaf_only_when_a_ping_is_overdue() -> None:
    clock = Clock()
    check = HearingCheck(interval=1.0, patience=2, clock=clock)
    first = check.ping()
    assert check.is_own(first) and not check.is_own(Ping(nonce="health-123"))
    clock.now += 1.0
    second = check.ping()
    clock.now += 0.5
    check.came_back(second)  # the later one came back: the earlier will not any more
    assert check.heard == 1
    clock.now += 10
    assert not check.deaf()
    check.ping()
    clock.now += 2.0
    assert not check.deaf()
    clock.now += 0.1
    assert check.deaf()
    check.reset()
    assert not check.deaf()


def test_a_service_busy_with_a_backlog_is_not_deaf() -> None:
    clock = Clock()
    check = HearingCheck(interval=1.0, patience=2, clock=clock)
    check.ping()
    clock.now += 1.5
    check.heard_something()  # a flood keeps it busy: its ping is stuck behind it
    clock.now += 5.0
    assert not check.deaf()
    check.ping()
    clock.now += 2.1  # silence since this one: deaf
    assert check.deaf()
