"""Lifecycle rules with a hand-driven clock: no broker, no waiting."""

from __future__ import annotations

import pytest

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.protocol import PROTOCOL_VERSION, Birth, DeviceState, Heartbeat
from sciot_mqtt.service import Presence, Registry
from sciot_mqtt.service.registry import Reaction, session_is_newer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> Registry:
    return Registry(
        models=["fomo96", "tiny"],
        hb_interval=1.0,
        instance="edge",
        max_payload=100_000,
        missed_heartbeats=3,
        offline_grace=5.0,
        clock=clock,
    )


def birth(session: int, models: list[str] | None = None, protocol: int = PROTOCOL_VERSION) -> Birth:
    return Birth(
        protocol=protocol,
        session=session,
        kind="t",
        models=models or ["tiny", "fomo96"],
        max_payload=50_000,
    )


def hb(seq: int, session: int) -> Heartbeat:
    return Heartbeat(seq=seq, session=session, mode="offload")


def test_birth_assigns_the_preferred_model_and_smaller_payload_limit(registry: Registry) -> None:
    assign = registry.on_birth("d", birth(4))
    assert (assign.model, assign.session, assign.max_payload) == ("fomo96", 4, 50_000)
    assert assign.hb_interval_s == 1.0 and assign.instance == "edge"
    assert registry.counts().online == 1


def test_birth_without_a_served_model_or_with_another_protocol_is_refused(
    registry: Registry,
) -> None:
    with pytest.raises(ProtocolError) as caught:
        registry.on_birth("d", birth(1, ["other"]))
    assert caught.value.code is ErrorCode.NO_MODEL
    with pytest.raises(ProtocolError) as caught:
        registry.on_birth("d", birth(1, protocol=PROTOCOL_VERSION + 1))
    assert caught.value.code is ErrorCode.UNSUPPORTED_VERSION
    assert len(registry) == 0


def test_missed_heartbeats_make_stale_then_offline(registry: Registry, clock: Clock) -> None:
    registry.on_birth("d", birth(1))
    clock.now += 2.9
    assert registry.sweep() == []
    clock.now += 0.2  # 3.1 s > 3 intervals
    (transition,) = registry.sweep()
    assert (transition.before, transition.after) == (Presence.ONLINE, Presence.STALE)
    clock.now += 4.9
    assert registry.sweep() == []
    clock.now += 0.2
    (transition,) = registry.sweep()
    assert transition.after is Presence.OFFLINE
    assert registry.counts().offline == 1


def test_heartbeat_of_current_session_revives_a_stale_device(
    registry: Registry, clock: Clock
) -> None:
    registry.on_birth("d", birth(1))
    clock.now += 10
    registry.sweep()
    reaction = registry.on_heartbeat("d", hb(0, 1))
    transition, rebirth = reaction.transition, reaction.rebirth
    assert transition is not None and transition.after is Presence.ONLINE and not rebirth


def test_heartbeat_from_unknown_offline_or_other_session_wants_rebirth(
    registry: Registry, clock: Clock
) -> None:
    assert registry.on_heartbeat("ghost", hb(0, 1)) == Reaction(rebirth=True)
    registry.on_birth("d", birth(1))
    assert registry.on_heartbeat("d", hb(0, 2)) == Reaction(rebirth=True)
    registry.on_state("d", DeviceState(online=False, session=1), retained=False)
    assert registry.on_heartbeat("d", hb(1, 1)) == Reaction(rebirth=True)


def test_rebirth_requests_are_rate_limited(registry: Registry, clock: Clock) -> None:
    registry.on_birth("d", birth(1))
    assert registry.should_request_rebirth("d")
    assert not registry.should_request_rebirth("d")
    clock.now += 1.01
    assert registry.should_request_rebirth("d")


def test_heartbeat_gaps_are_counted_across_wrap(registry: Registry) -> None:
    registry.on_birth("d", birth(1))
    for seq in (2**32 - 2, 2**32 - 1, 0, 1, 5):
        registry.on_heartbeat("d", hb(seq, 1))
    record = registry.get("d")
    assert record is not None and record.hb_gaps == 1 and record.last_hb_seq == 5


def test_will_of_current_session_is_offline_at_once(registry: Registry) -> None:
    registry.on_birth("d", birth(7))
    reaction = registry.on_state("d", DeviceState(online=False, session=7), retained=False)
    transition = reaction.transition
    assert transition is not None and transition.after is Presence.OFFLINE


def test_late_will_of_an_older_session_is_ignored(registry: Registry) -> None:
    registry.on_birth("d", birth(7))
    reaction = registry.on_state("d", DeviceState(online=False, session=6), retained=False)
    transition = reaction.transition
    record = registry.get("d")
    assert transition is None and record is not None
    assert record.presence is Presence.ONLINE and record.late_wills_ignored == 1


def test_late_will_across_counter_wrap_is_ignored(registry: Registry) -> None:
    registry.on_birth("d", birth(3))  # counter wrapped past 2^32 - 1
    registry.on_state("d", DeviceState(online=False, session=2**32 - 2), retained=False)
    record = registry.get("d")
    assert record is not None and record.presence is Presence.ONLINE


def test_retained_online_state_at_startup_asks_for_rebirth(registry: Registry) -> None:
    reaction = registry.on_state("d", DeviceState(online=True, session=3), retained=True)
    transition, rebirth = reaction.transition, reaction.rebirth
    assert rebirth and transition is None
    reaction = registry.on_state("gone", DeviceState(online=False, session=3), retained=True)
    rebirth = reaction.rebirth
    assert not rebirth
    assert registry.counts().model_dump() == {"online": 1, "stale": 0, "offline": 1}


def test_live_state_online_of_new_session_waits_for_its_birth(registry: Registry) -> None:
    registry.on_birth("d", birth(1))
    reaction = registry.on_state("d", DeviceState(online=True, session=2), retained=False)
    rebirth = reaction.rebirth
    record = registry.get("d")
    assert not rebirth and record is not None and not record.registered


def test_touch_all_forgives_silence_during_our_own_outage(registry: Registry, clock: Clock) -> None:
    registry.on_birth("d", birth(1))
    clock.now += 100
    registry.touch_all()
    assert registry.sweep() == []


@pytest.mark.parametrize(
    ("a", "b", "newer"),
    [(2, 1, True), (1, 2, False), (1, 1, False), (0, 2**32 - 1, True), (2**32 - 1, 0, False)],
)
def test_session_order_is_serial_arithmetic(a: int, b: int, newer: bool) -> None:
    assert session_is_newer(a, b) is newer


def _small(clock: Clock, **limits: float) -> Registry:
    return Registry(
        models=["fomo96"],
        hb_interval=1.0,
        instance="edge",
        max_payload=100_000,
        offline_grace=5.0,
        clock=clock,
        **limits,  # type: ignore[arg-type]
    )


def test_a_device_offline_past_evict_after_is_forgotten(clock: Clock) -> None:
    registry = _small(clock, evict_after=60.0)
    registry.on_birth("d", birth(1))
    registry.on_state("d", DeviceState(online=False, session=1), retained=False)
    clock.now += 59.0
    registry.sweep()
    assert registry.get("d") is not None
    clock.now += 2.0
    registry.sweep()
    assert registry.get("d") is None and registry.evicted == 1
    # Back again: it registers as a new device.
    assert registry.on_birth("d", birth(2)).session == 2


def test_a_full_registry_makes_room_from_the_longest_offline(clock: Clock) -> None:
    registry = _small(clock, max_devices=3)
    for name in ("a", "b", "c"):
        registry.on_birth(name, birth(1))
        clock.now += 1
    registry.on_state("b", DeviceState(online=False, session=1), retained=False)
    clock.now += 1
    registry.on_state("a", DeviceState(online=False, session=1), retained=False)
    registry.on_birth("d", birth(1))
    assert registry.get("b") is None  # offline first: the one that goes
    assert registry.get("a") is not None and len(registry) == 3


def test_a_registry_full_of_online_devices_refuses_births(clock: Clock) -> None:
    registry = _small(clock, max_devices=2)
    registry.on_birth("a", birth(1))
    registry.on_birth("b", birth(1))
    with pytest.raises(ProtocolError) as caught:
        registry.on_birth("c", birth(1))
    assert caught.value.code is ErrorCode.DEVICE_LIMIT
    # Neither does an unknown device's state or heartbeat take a place (nor ask for a birth).
    assert registry.on_state("x", DeviceState(online=True, session=1), retained=True) == Reaction()
    assert len(registry) == 2
    registry.on_birth("a", birth(2))  # a known device still re-registers
    assert registry.get("a") is not None and registry.get("a").session == 2  # type: ignore[union-attr]
