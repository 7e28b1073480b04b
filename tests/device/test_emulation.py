"""Link and compute emulation with a hand-driven clock and seeded draws: no sleeps."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.device.emulation import (
    LINK_PROFILES,
    ComputeEmulator,
    ComputeProfile,
    Distribution,
    LinkEmulator,
    LinkProfile,
    LinkSchedule,
    load_compute_profile,
    load_link_profile,
)
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.models.catalog import resolve_package
from sciot_mqtt.models.package import ModelPackage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def fomo96(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    return resolve_package("fomo96", tmp_path_factory.mktemp("models"))


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


# -- compute -----------------------------------------------------------------------------


def test_host_takes_what_it_measured(fomo96: ModelPackage) -> None:
    profile = load_compute_profile("host", fomo96)
    assert profile.is_host and profile.distribution == "static"
    emu = ComputeEmulator(profile)
    assert emu.op_seconds(3, 0.0123) == 0.0123
    assert emu.op_seconds(99, -1.0) == 0.0  # any op: it has no table
    emu.set_scale(3.0)
    assert emu.op_seconds(0, 0.01) == pytest.approx(0.03)


def test_esp32s3_uses_reference_times_scaled(fomo96: ModelPackage) -> None:
    reference = [op.reference_ms for op in fomo96.ops]
    assert all(ms is not None for ms in reference)
    full = load_compute_profile("esp32s3", fomo96)
    assert full.per_op_ms == tuple(reference)
    fast = load_compute_profile("esp32s3:0.2", fomo96)
    assert fast.per_op_ms == pytest.approx([ms * 0.2 for ms in reference if ms is not None])
    emu = ComputeEmulator(fast)
    for i, ms in enumerate(reference):
        assert emu.op_seconds(i, 0.0) == pytest.approx((ms or 0.0) * 0.2 / 1000)
    assert emu.op_seconds(0, 10.0) == 10.0  # never faster than it really was
    emu.set_scale(2.0)
    assert emu.op_seconds(0, 0.0) == pytest.approx((reference[0] or 0.0) * 0.4 / 1000)
    with pytest.raises(IndexError):
        emu.op_seconds(fomo96.num_ops, 0.0)
    with pytest.raises(ValueError, match="scale"):
        emu.set_scale(0.0)


@pytest.mark.parametrize(
    ("spec", "distribution", "spread"),
    [
        ("esp32s3:0.2:gaussian:0.1", "gaussian", 0.1),
        ("esp32s3:uniform:0.05", "uniform", 0.05),
        ("esp32s3:1:gaussian", "gaussian", 0.1),
        ("esp32s3:exponential", "exponential", 1.0),
        ("host:gaussian:0.3", "gaussian", 0.3),
    ],
)
def test_distribution_suffix(
    fomo96: ModelPackage, spec: str, distribution: Distribution, spread: float
) -> None:
    profile = load_compute_profile(spec, fomo96)
    assert (profile.name, profile.distribution, profile.spread) == (spec, distribution, spread)


@pytest.mark.parametrize(
    ("distribution", "spread", "sd"),
    [
        ("static", 0.5, 0.0),
        ("gaussian", 0.1, 0.1),
        ("uniform", 0.2, 0.2 / math.sqrt(3)),
        ("exponential", 1.0, 1.0),
        ("exponential", 0.3, 0.3),
    ],
)
def test_distributions_have_the_right_mean_and_spread(
    distribution: Distribution, spread: float, sd: float
) -> None:
    emu = ComputeEmulator(ComputeProfile("t", (100.0, 40.0), distribution, spread), seed=5)
    draws = np.array([emu.op_seconds(0, 0.0) for _ in range(20_000)]) * 1000
    assert draws.mean() == pytest.approx(100.0, rel=0.02)
    assert draws.std() == pytest.approx(100.0 * sd, rel=0.05, abs=1e-9)
    assert draws.min() >= 0
    if distribution == "uniform":
        assert draws.min() >= 80.0 and draws.max() <= 120.0
    if distribution == "exponential":
        assert draws.min() >= 100.0 * (1 - spread)


def test_noisy_op_stands_out(fomo96: ModelPackage) -> None:
    emu = ComputeEmulator(load_compute_profile("esp32s3:0.2:gaussian:0.02", fomo96), seed=6)
    noisy = 7
    emu.noisy_ops[noisy] = 0.3
    runs = np.array([[emu.op_seconds(i, 0.0) for i in range(fomo96.num_ops)] for _ in range(1000)])
    cv = runs.std(axis=0) / runs.mean(axis=0)
    assert cv[noisy] > 0.15
    assert np.delete(cv, noisy).max() < 0.05


def test_noisy_op_on_a_static_profile_turns_gaussian() -> None:
    emu = ComputeEmulator(ComputeProfile("t", (10.0, 10.0)), seed=7)
    emu.noisy_ops[1] = 0.4
    steady = {emu.op_seconds(0, 0.0) for _ in range(100)}
    noisy = np.array([emu.op_seconds(1, 0.0) for _ in range(2000)])
    assert steady == {0.010}
    assert noisy.std() / noisy.mean() > 0.3


def test_compute_file(tmp_path: Path, fomo96: ModelPackage) -> None:
    path = tmp_path / "mcu.json"
    times = [float(i + 1) for i in range(fomo96.num_ops)]
    path.write_text(json.dumps({"per_op_ms": times, "distribution": "gaussian", "scale": 2}))
    profile = load_compute_profile(str(path), fomo96)
    assert profile.name == "mcu"
    assert profile.per_op_ms == tuple(2 * t for t in times)
    assert (profile.distribution, profile.spread) == ("gaussian", 0.1)
    scaled = load_compute_profile(f"{path}:0.5:uniform:0.2", fomo96)
    assert scaled.per_op_ms == tuple(times)
    assert (scaled.distribution, scaled.spread) == ("uniform", 0.2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("esp32", r"unknown compute profile 'esp32'.*host, esp32s3"),
        ("esp32s3:fast", "'fast' is not a scale factor"),
        ("esp32s3:0", "scale factor must be > 0"),
        ("esp32s3:1:weird", "'weird' is not a distribution|distribution must be one of"),
        ("esp32s3:1:gaussian:-1", "spread must be >= 0"),
        ("esp32s3:1:gaussian:0.1:more", "too many parts"),
        ("host:2", "real speed"),
        ("/nonexistent/mcu.json", "file not found"),
    ],
)
def test_bad_compute_specs(fomo96: ModelPackage, spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_compute_profile(spec, fomo96)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"per_op_ms": [1.0, 2.0]}, "has 2 times but model 'fomo96' has 25 operators"),
        ({"per_op_ms": []}, "non-empty list"),
        ({"per_op_ms": ["a"]}, "numbers only"),
        ({"per_op_ms": [1.0], "sigma": 1}, "unknown compute profile field"),
        ({"per_op_ms": [1.0], "distribution": "pareto"}, "distribution must be one of"),
    ],
)
def test_bad_compute_files(
    tmp_path: Path, fomo96: ModelPackage, content: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigurationError, match=message):
        load_compute_profile(str(path), fomo96)


def test_esp32s3_needs_a_reference_mapping(fomo96: ModelPackage) -> None:
    unmapped = dataclasses.replace(
        fomo96,
        reference=None,
        ops=[dataclasses.replace(op, reference_ms=None) for op in fomo96.ops],
    )
    with pytest.raises(ConfigurationError, match="no esp32s3 reference times"):
        load_compute_profile("esp32s3", unmapped)
    assert load_compute_profile("host", unmapped).is_host
    other = dataclasses.replace(fomo96, reference="esp32-other-layers")
    with pytest.raises(ConfigurationError, match="not esp32s3"):
        load_compute_profile("esp32s3", other)
