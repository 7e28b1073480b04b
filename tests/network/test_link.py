"""Link profiles, schedules and the link emulator, with a hand-driven clock and seeded draws:
no sleeps."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.network.emulator import LinkEmulator
from sciot_mqtt.network.link import LINK_PROFILES, LinkProfile, LinkSchedule, load_link_profile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def link(
    latency_ms: float = 0.0,
    jitter_ms: float = 0.0,
    up_kbps: float = math.inf,
    down_kbps: float = math.inf,
    loss: float = 0.0,
) -> LinkProfile:
    return LinkProfile("test", latency_ms, jitter_ms, up_kbps, down_kbps, loss)


def spaced_delays(emu: LinkEmulator, clock: Clock, n: int, nbytes: int = 0) -> np.ndarray:
    """``n`` uplink delays of messages sent far apart, so no queueing or ordering applies."""
    out = np.empty(n)
    for k in range(n):
        clock.now += 100.0
        out[k] = emu.delay_s("up", nbytes)
    return out


# -- link profiles -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["loopback", "5g", "wifi", "lte", "congested", "lossy"])
def test_each_named_profile_loads(name: str) -> None:
    profile = load_link_profile(name)
    assert profile is LINK_PROFILES[name]
    assert profile.name == name
    assert load_link_profile(f" {name.upper()} ") is profile
    assert profile.is_loopback == (name == "loopback")
    assert profile.uplink_kbps <= profile.downlink_kbps


def test_lossy_is_wifi_with_loss() -> None:
    wifi, lossy = LINK_PROFILES["wifi"], LINK_PROFILES["lossy"]
    assert wifi.loss == 0 and 0.02 <= lossy.loss <= 0.05
    assert dataclasses.replace(lossy, name="wifi", loss=0.0) == wifi


def test_custom_json_profile(tmp_path: Path) -> None:
    path = tmp_path / "sat.json"
    path.write_text(json.dumps({"latency_ms": 300, "uplink_kbps": 2000, "downlink_kbps": None}))
    profile = load_link_profile(str(path))
    assert profile == LinkProfile("sat", 300.0, 0.0, 2000.0, math.inf, 0.0)
    assert profile.to_dict()["downlink_kbps"] is None
    path.write_text(json.dumps({**profile.to_dict(), "name": "geo", "jitter_ms": 20, "loss": 0.01}))
    assert load_link_profile(str(path)) == LinkProfile("geo", 300.0, 20.0, 2000.0, math.inf, 0.01)


FAST = {"uplink_kbps": 1, "downlink_kbps": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "holds a schedule"),
        ('"wifi"', "JSON object"),
        (json.dumps({"latency": 5, **FAST}), r"unknown link profile field.*latency"),
        (json.dumps({"latency_ms": 5, "uplink_kbps": 1}), r"missing .*downlink_kbps"),
        (json.dumps({"latency_ms": 5, **FAST, "loss": 1.5}), r"loss must be in \[0, 1\)"),
        (json.dumps({"latency_ms": "fast", **FAST}), "latency_ms must be a number"),
        (json.dumps({**FAST, "latency_ms": 5, "uplink_kbps": 0}), "uplink_kbps must be > 0"),
        (json.dumps({"latency_ms": 0, "jitter_ms": 2, **FAST}), "needs a latency_ms"),
    ],
)
def test_bad_profile_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_link_profile(str(path))


def test_unknown_profile_name_and_missing_file() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown link profile '3g'.*wifi.*\.json"):
        load_link_profile("3g")
    with pytest.raises(ConfigurationError, match="file not found"):
        load_link_profile("/nonexistent/link.json")


# -- link emulator: arithmetic -----------------------------------------------------------


def test_serialization_is_bits_over_kbps(clock: Clock) -> None:
    emu = LinkEmulator(link(up_kbps=1000, down_kbps=4000), clock=clock)
    # 1250 bytes = 10,000 bits: 10 ms at 1000 kbit/s, 2.5 ms at 4000 kbit/s.
    assert emu.delay_s("up", 1250) == pytest.approx(0.010)
    clock.now += 1.0
    assert emu.delay_s("down", 1250) == pytest.approx(0.0025)
    assert LINK_PROFILES["lte"].serialization_ms("up", 110_592) == pytest.approx(110_592 * 8 / 5000)


def test_back_to_back_uplinks_queue(clock: Clock) -> None:
    emu = LinkEmulator(link(latency_ms=5, up_kbps=1000, down_kbps=1000), clock=clock)
    assert emu.delay_s("up", 1250) == pytest.approx(0.015)  # 10 ms on the wire + 5 ms
    assert emu.delay_s("up", 1250) == pytest.approx(0.025)  # waits for the first to leave
    assert emu.delay_s("down", 1250) == pytest.approx(0.015)  # the other direction is free
    clock.now += 0.015  # the first two have left after 20 ms: 5 ms of queue remain
    assert emu.delay_s("up", 1250) == pytest.approx(0.005 + 0.010 + 0.005)
    clock.now += 1.0  # drained
    assert emu.delay_s("up", 1250) == pytest.approx(0.015)
    stats = emu.stats["up"]
    assert (stats.messages, stats.bytes, stats.retransmissions) == (4, 5000, 0)
    assert stats.delay_s == pytest.approx(0.015 + 0.025 + 0.020 + 0.015)


def test_jitter_never_makes_a_delay_negative(clock: Clock) -> None:
    wild = LinkEmulator(link(latency_ms=1, jitter_ms=5), seed=1, clock=clock)
    delays = spaced_delays(wild, clock, 5000)
    assert delays.min() >= 0
    assert delays.mean() == pytest.approx(0.001, rel=0.15)  # the mean is the latency


def test_jitter_has_latency_mean_and_jitter_spread(clock: Clock) -> None:
    emu = LinkEmulator(LINK_PROFILES["lte"], seed=2, clock=clock)
    delays = spaced_delays(emu, clock, 20_000) * 1000
    assert delays.mean() == pytest.approx(25.0, rel=0.02)
    assert delays.std() == pytest.approx(8.0, rel=0.05)
    assert delays.min() > 0


def test_loss_stalls_at_the_configured_rate(clock: Clock) -> None:
    emu = LinkEmulator(link(latency_ms=5, loss=0.05), seed=3, clock=clock)
    delays = spaced_delays(emu, clock, 20_000)
    rto = 0.200  # max(200 ms, 2 * 5 ms)
    stalls = np.round((delays - 0.005) / rto, 6)
    assert (stalls > 0).mean() == pytest.approx(0.05, abs=0.006)
    # A stall is one RTO; a second loss of the same message doubles it (backoff).
    assert set(stalls) <= {0, 1, 3, 7, 15}
    assert (stalls >= 3).mean() == pytest.approx(0.05**2, abs=0.0015)
    assert emu.stats["up"].retransmissions == int(np.log2(stalls + 1).round().sum())


def test_rto_follows_the_round_trip() -> None:
    assert LINK_PROFILES["wifi"].rto_ms == 200.0
    assert LINK_PROFILES["congested"].rto_ms == pytest.approx(2 * 60 + 4 * 30)


def test_messages_arrive_in_order(clock: Clock) -> None:
    emu = LinkEmulator(LINK_PROFILES["congested"], seed=4, clock=clock)
    arrivals = []
    for _ in range(2000):
        clock.now += 0.001
        arrivals.append(clock.now + emu.delay_s("up", 10))
    assert all(b >= a for a, b in itertools.pairwise(arrivals))


def test_seeded_draws_repeat() -> None:
    def run(seed: int) -> list[float]:
        c = Clock()
        emu = LinkEmulator(LINK_PROFILES["congested"], seed=seed, clock=c)
        return [emu.delay_s("up", 1000) for _ in range(20)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_bad_arguments(clock: Clock) -> None:
    emu = LinkEmulator(LINK_PROFILES["wifi"], clock=clock)
    with pytest.raises(ValueError, match="direction"):
        emu.delay_s("sideways", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nbytes"):
        emu.delay_s("up", -1)


async def test_loopback_does_not_delay() -> None:
    emu = LinkEmulator("loopback")
    assert emu.delay_s("up", 1 << 20) == 0.0
    assert await emu.uplink(100_000) == 0.0
    assert await emu.downlink(100_000) == 0.0


# -- schedules ---------------------------------------------------------------------------


def test_schedule_switches_profiles() -> None:
    schedule = LinkSchedule.parse("wifi@0,lte@30,congested@60")
    expected = {-1: "wifi", 0: "wifi", 29.99: "wifi", 30: "lte", 59: "lte", 60: "congested"}
    for at, name in expected.items():
        assert schedule.profile_at(at).name == name
    assert schedule.profile_at(1e9).name == "congested"  # the last one stays
    assert str(schedule) == "wifi@0,lte@30,congested@60"
    assert LinkSchedule.parse("lte@30s, wifi") == LinkSchedule(schedule.entries[:2])
    assert LinkSchedule.parse("5g").entries == ((0.0, LINK_PROFILES["5g"]),)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty link schedule"),
        ("lte@30", "must start at 0"),
        ("wifi@0,lte@0", "two profiles at 0"),
        ("wifi,lte", "two profiles at 0"),
        ("wifi,lte@soon", "not a time"),
        ("wifi,lte@-5", "not a time|>= 0"),
        ("wifi,,lte@5", "empty item"),
        ("wifi,3g@5", "unknown link profile '3g'"),
    ],
)
def test_bad_schedules(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LinkSchedule.parse(spec)


def test_schedule_file(tmp_path: Path) -> None:
    (tmp_path / "slow.json").write_text(
        json.dumps({"latency_ms": 100, "uplink_kbps": 100, "downlink_kbps": 200})
    )
    path = tmp_path / "day.json"
    path.write_text(
        json.dumps(
            [
                {"at_s": 10, "profile": "slow.json"},
                {"at_s": 0, "profile": "wifi"},
                {"at_s": 20, "profile": {"latency_ms": 1, **FAST}},
            ]
        )
    )
    schedule = LinkSchedule.parse(str(path))
    assert [p.name for _, p in schedule.entries] == ["wifi", "slow", "day[2]"]
    assert schedule.times == (0.0, 10.0, 20.0)
    # A file holding one profile is a constant schedule.
    assert LinkSchedule.parse(str(tmp_path / "slow.json")).profile_at(99).name == "slow"
    path.write_text(json.dumps([{"at_s": 5, "profile": "wifi"}]))
    with pytest.raises(ConfigurationError, match=r"day\.json.*start at 0"):
        LinkSchedule.parse(str(path))
    path.write_text(json.dumps([{"at": 0, "profile": "wifi"}]))
    with pytest.raises(ConfigurationError, match="entry 0"):
        LinkSchedule.parse(str(path))


def test_emulator_follows_the_schedule_until_overridden(clock: Clock) -> None:
    emu = LinkEmulator("wifi@0,lte@30", clock=clock)
    assert emu.profile.name == "wifi"
    clock.now += 30
    assert emu.profile.name == "lte"
    assert emu.delay_s("up", 0) == pytest.approx(0.025, abs=0.02)
    emu.set_profile("congested")
    assert emu.profile.name == "congested"
    clock.now += 1000
    assert emu.profile.name == "congested"  # the override outlasts the schedule
    emu.set_profile(LINK_PROFILES["loopback"])
    assert emu.delay_s("up", 10_000) == 0.0
