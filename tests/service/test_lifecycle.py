"""Device lifecycle against the real service, real devices and a real broker (amqtt, Mosquitto)."""

from __future__ import annotations

import asyncio

import msgpack

from sciot_mqtt.device import Device
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    Assign,
    Birth,
    Command,
    DeviceState,
    DeviceTopic,
    ErrorReport,
    Heartbeat,
    ServiceState,
    ServiceStats,
    ServiceTopic,
    device_topic,
    service_topic,
)
from sciot_mqtt.service import Presence, Service
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory
from sciot_mqtt.transport import BrokerAddress


def birth(session: int, models: list[str] | None = None) -> Birth:
    return Birth(
        protocol=PROTOCOL_VERSION,
        session=session,
        kind="test",
        models=models or ["fomo96"],
        max_payload=65536,
    )


async def test_birth_gets_retained_assign(
    sciot_service: Service, sciot_device_factory: DeviceFactory, sciot_probe: MqttProbe
) -> None:
    device = await sciot_device_factory("cam-1")
    assign = await sciot_probe.expect_message(
        Assign, device_topic("cam-1", DeviceTopic.ASSIGN), lambda a: a.session == device.session
    )
    assert assign.model == "fomo96"
    assert assign.instance == "test"
    assert assign.hb_interval_s == sciot_service.settings.heartbeat_interval
    await device.wait_until(lambda: device.mode == "offload", timeout=5)
    record = sciot_service.registry.get("cam-1")
    assert record is not None and record.registered and record.presence is Presence.ONLINE

    # Retained: a client arriving later reads the assignment at once.
    async with MqttProbe(
        sciot_service.broker, device_topic("cam-1", DeviceTopic.ASSIGN), client_id="late"
    ) as late:
        message = await late.expect(device_topic("cam-1", DeviceTopic.ASSIGN))
        assert message.retain and Assign.decode(message.payload).model == "fomo96"


async def test_reconnecting_device_knows_its_assignment_before_the_service_answers(
    sciot_broker: BrokerAddress,
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
) -> None:
    first = await sciot_device_factory("cam-2")
    await first.wait_until(lambda: first.mode == "offload", timeout=5)
    await first.stop()
    await sciot_service.stop()  # nobody can answer a new birth now

    again = await sciot_device_factory("cam-2")
    await again.wait_until(lambda: again.assignment is not None, timeout=5)
    assert again.assignment is not None and again.assignment.model == "fomo96"
    assert again.assignment.session != again.session  # it is the retained one, from before
    assert again.mode == "local"  # the service is offline, so it works alone


async def test_device_picks_preferred_model_and_no_model_is_an_error(
    sciot_broker: BrokerAddress, sciot_probe: MqttProbe
) -> None:
    settings = ServiceSettings(
        _env_file=None,
        instance="pref",
        models=["big", "fomo96"],
        heartbeat_interval=0.5,  # type: ignore[call-arg]
    )
    async with Service(settings, sciot_broker) as service:
        await service.connected(timeout=5)
        await sciot_probe.publish(
            device_topic("multi", DeviceTopic.BIRTH), birth(1, ["fomo96", "big"]).encode()
        )
        assign = await sciot_probe.expect_message(Assign, device_topic("multi", DeviceTopic.ASSIGN))
        assert assign.model == "big"

        mark = sciot_probe.mark()
        await sciot_probe.publish(
            device_topic("odd", DeviceTopic.BIRTH), birth(1, ["other"]).encode()
        )
        error = await sciot_probe.expect_message(
            ErrorReport, device_topic("odd", DeviceTopic.ERROR), since=mark
        )
        assert error.code == "no_model" and error.topic == "birth"
        assert not any(
            m.topic == device_topic("odd", DeviceTopic.ASSIGN) for m in sciot_probe.messages
        )


async def test_heartbeat_loss_stale_offline_return_rebirth(
    sciot_service: Service, sciot_probe: MqttProbe
) -> None:
    """A hand-driven device: heartbeats stop, then resume; the service asks for a rebirth."""
    dev = "quiet"
    await sciot_probe.publish(
        device_topic(dev, DeviceTopic.STATE),
        DeviceState(online=True, session=7).encode(),
        retain=True,
    )
    await sciot_probe.publish(device_topic(dev, DeviceTopic.BIRTH), birth(7).encode())
    await sciot_probe.expect_message(Assign, device_topic(dev, DeviceTopic.ASSIGN))
    await sciot_probe.publish(
        device_topic(dev, DeviceTopic.HB), Heartbeat(seq=0, session=7, mode="offload").encode()
    )

    def presence() -> Presence | None:
        record = sciot_service.registry.get(dev)
        return record.presence if record else None

    await sciot_service.wait_until(lambda: presence() is Presence.STALE, timeout=5)
    stats = await sciot_probe.expect_message(
        ServiceStats, service_topic("test", ServiceTopic.STATS), lambda s: s.devices.stale == 1
    )
    assert stats.devices.online == 0
    await sciot_service.wait_until(lambda: presence() is Presence.OFFLINE, timeout=5)

    mark = sciot_probe.mark()
    await sciot_probe.publish(
        device_topic(dev, DeviceTopic.HB), Heartbeat(seq=1, session=7, mode="offload").encode()
    )
    command = await sciot_probe.expect_message(
        Command, device_topic(dev, DeviceTopic.CMD), since=mark
    )
    assert command.cmd == "rebirth"
    await sciot_probe.publish(device_topic(dev, DeviceTopic.BIRTH), birth(7).encode())
    await sciot_service.wait_until(lambda: presence() is Presence.ONLINE, timeout=5)


async def test_stale_device_comes_back_online_with_heartbeats(
    sciot_service: Service, sciot_probe: MqttProbe
) -> None:
    """Stale is not gone: a heartbeat of the current session brings it back, no rebirth."""
    dev = "sleepy"
    await sciot_probe.publish(device_topic(dev, DeviceTopic.BIRTH), birth(11).encode())
    await sciot_probe.expect_message(Assign, device_topic(dev, DeviceTopic.ASSIGN))
    record = sciot_service.registry.get(dev)
    assert record is not None
    await sciot_service.wait_until(lambda: record.presence is Presence.STALE, timeout=5)

    mark = sciot_probe.mark()
    await sciot_probe.publish(
        device_topic(dev, DeviceTopic.HB), Heartbeat(seq=0, session=11, mode="offload").encode()
    )
    await sciot_service.wait_until(lambda: record.presence is Presence.ONLINE, timeout=5)
    # The sequence gap is counted, and no rebirth was asked for.
    await sciot_probe.publish(
        device_topic(dev, DeviceTopic.HB), Heartbeat(seq=5, session=11, mode="offload").encode()
    )
    await sciot_service.wait_until(lambda: record.last_hb_seq == 5, timeout=5)
    assert record.hb_gaps == 1
    assert not any(
        m.topic == device_topic(dev, DeviceTopic.CMD) for m in sciot_probe.messages[mark:]
    )


async def test_will_marks_offline_and_a_late_will_is_ignored(
    sciot_service: Service, sciot_device_factory: DeviceFactory, sciot_probe: MqttProbe
) -> None:
    device = await sciot_device_factory("willy")
    await device.wait_until(lambda: device.mode == "offload", timeout=5)
    record = sciot_service.registry.get("willy")
    assert record is not None
    old_session = device.session - 1

    # A will from an older connection arriving late must not take the current one offline.
    await sciot_probe.publish(
        device_topic("willy", DeviceTopic.STATE),
        DeviceState(online=False, session=old_session).encode(),
    )
    await sciot_service.wait_until(lambda: record.late_wills_ignored == 1, timeout=5)
    assert record.presence is Presence.ONLINE

    # The current session's will takes it offline at once, without waiting for heartbeats.
    await sciot_probe.publish(
        device_topic("willy", DeviceTopic.STATE),
        DeviceState(online=False, session=device.session).encode(),
    )
    await sciot_service.wait_until(lambda: record.presence is Presence.OFFLINE, timeout=1)


async def test_device_falls_back_to_local_and_resumes(
    sciot_broker: BrokerAddress,
    sciot_service_settings: ServiceSettings,
    sciot_device_factory: DeviceFactory,
    sciot_probe: MqttProbe,
) -> None:
    async with Service(sciot_service_settings, sciot_broker) as service:
        await service.connected(timeout=5)
        device = await sciot_device_factory("steady")
        await device.wait_until(lambda: device.mode == "offload", timeout=5)
    await sciot_probe.expect_message(
        ServiceState, service_topic("test", ServiceTopic.STATE), lambda s: not s.online
    )
    await device.wait_until(lambda: device.mode == "local", timeout=5)
    # Heartbeats say so too: the mode is visible on the wire.
    mark = sciot_probe.mark()
    await sciot_probe.expect_message(
        Heartbeat, device_topic("steady", DeviceTopic.HB), lambda h: h.mode == "local", since=mark
    )

    async with Service(sciot_service_settings, sciot_broker) as service:
        await device.wait_until(lambda: device.mode == "offload", timeout=5)
    summary = device.summary()
    assert summary.fallbacks >= 1 and summary.resumes >= 2


async def test_restarted_service_rebuilds_registry_and_asks_for_rebirth(
    sciot_broker: BrokerAddress,
    sciot_service_settings: ServiceSettings,
    sciot_device_factory: DeviceFactory,
) -> None:
    async with Service(sciot_service_settings, sciot_broker) as first:
        await first.connected(timeout=5)
        devices = [await sciot_device_factory(f"fleet-{i}") for i in range(3)]
        for device in devices:
            await device.wait_until(lambda d=device: d.mode == "offload", timeout=5)
        gone = devices.pop()
        await gone.stop()  # leaves cleanly: retained `online: false`
        await first.wait_until(
            lambda: (
                (r := first.registry.get(gone.device_id)) is not None
                and r.presence is Presence.OFFLINE
            ),
            timeout=5,
        )

    async with Service(sciot_service_settings, sciot_broker) as second:
        await second.wait_until(
            lambda: all(
                (r := second.registry.get(d.device_id)) is not None and r.registered
                for d in devices
            ),
            timeout=10,
        )
        offline = second.registry.get(gone.device_id)
        assert offline is not None and offline.presence is Presence.OFFLINE
        assert second.registry.counts().online == 2
        for device in devices:
            await device.wait_until(lambda d=device: d.summary().rebirths >= 1, timeout=5)


async def test_malformed_payloads_get_errors_and_others_keep_being_served(
    sciot_service: Service, sciot_device: Device, sciot_probe: MqttProbe
) -> None:
    bad = "mallory"
    garbage = {
        "random bytes": (b"\xc1\xff\x00garbage", "malformed"),
        "not a map": (msgpack.packb([1, 2, 3]), "malformed"),
        "wrong types": (msgpack.packb({"protocol": "1", "session": "x", "online": 1}), "invalid"),
        "missing fields": (msgpack.packb({}), "invalid"),
        "oversized": (msgpack.packb({"pad": b"\x00" * 10_000}), "too_large"),
    }
    for kind in (DeviceTopic.BIRTH, DeviceTopic.STATE, DeviceTopic.HB):
        for label, (payload, code) in garbage.items():
            mark = sciot_probe.mark()
            await sciot_probe.publish(device_topic(bad, kind), payload)
            error = await sciot_probe.expect_message(
                ErrorReport, device_topic(bad, DeviceTopic.ERROR), since=mark
            )
            assert (error.code, error.topic) == (code, kind.value), label
    assert sciot_service.counters.errors == 15

    # An id that is not a safe topic level is answered on its own error topic.
    mark = sciot_probe.mark()
    await sciot_probe.publish(device_topic("bad id!", DeviceTopic.BIRTH), birth(1).encode())
    error = await sciot_probe.expect_message(
        ErrorReport, device_topic("bad id!", DeviceTopic.ERROR), since=mark
    )
    assert error.code == "invalid_device_id"

    # The well-behaved device never noticed, and a newcomer is still served.
    record = sciot_service.registry.get(sciot_device.device_id)
    assert record is not None and record.presence is Presence.ONLINE
    assert sciot_device.summary().errors_received == 0
    mark = sciot_probe.mark()
    await sciot_probe.publish(device_topic("newcomer", DeviceTopic.BIRTH), birth(3).encode())
    await sciot_probe.expect_message(
        Assign, device_topic("newcomer", DeviceTopic.ASSIGN), since=mark
    )
    seq_before = record.last_hb_seq
    await sciot_service.wait_until(lambda: record.last_hb_seq != seq_before, timeout=5)


async def test_service_state_is_retained_with_a_will(
    sciot_service: Service, sciot_broker: BrokerAddress
) -> None:
    async with MqttProbe(
        sciot_broker, service_topic("test", ServiceTopic.STATE), client_id="o"
    ) as probe:
        state = await probe.expect_message(ServiceState, service_topic("test", ServiceTopic.STATE))
        assert state.online and state.instance == "test" and state.started_at is not None
        assert probe.messages[0].retain
    await asyncio.wait_for(sciot_service.stop(), 5)
