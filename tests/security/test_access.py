"""Logins and topic ACLs on both brokers, with real clients, the real service and the model.

Every broker here runs with the same password file (written by `sciot_mqtt.creds`) and the
same rules: Mosquitto with the generated ACL, amqtt with the project's plugins.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct

import pytest

from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.errors import AccessDeniedError, ConnectionLostError
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    Birth,
    Command,
    DeviceState,
    DeviceTopic,
    Echo,
    EchoReply,
    Heartbeat,
    device_topic,
)
from sciot_mqtt.service import Service
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import Credentials, Inbound, MqttSession
from tests.security.conftest import OPERATOR, SecuredBroker, device_on


def _birth(session: int = 1) -> bytes:
    return Birth(
        protocol=PROTOCOL_VERSION, session=session, kind="python", models=["fomo96"],
        max_payload=262_144,
    ).encode()  # fmt: skip


def _under(device_id: str, messages: list[Inbound]) -> list[str]:
    return [m.topic for m in messages if m.topic.startswith(f"sciot/v1/dev/{device_id}/")]


async def _connect_fails(address_and_id: tuple[object, str]) -> str:
    address, client_id = address_and_id
    with pytest.raises(ConnectionLostError) as caught:
        async with MqttSession(address, client_id=client_id):  # type: ignore[arg-type]
            pass
    return str(caught.value)


async def test_only_right_passwords_log_in(secured_broker: SecuredBroker) -> None:
    broker = secured_broker
    wrong = broker.as_user("dev-a", "not-the-password")
    swapped = broker.as_user("dev-a", broker.passwords["dev-b"])
    unknown = dataclasses.replace(broker.address, credentials=Credentials("dev-z", "x" * 12))
    for address in (wrong, swapped, unknown):
        message = await _connect_fails((address, "intruder"))
        assert "refused" in message and "check the username and password" in message
    anonymous = await _connect_fails((broker.address, "anonymous"))
    assert "requires a username and password" in anonymous
    async with MqttSession(broker.as_user("dev-a"), client_id="dev-a") as session:
        await session.publish(device_topic("dev-a", DeviceTopic.BIRTH), _birth())


async def test_a_device_cannot_publish_as_another(
    secured_broker: SecuredBroker, service: Service, observer: MqttProbe
) -> None:
    async with MqttSession(secured_broker.as_user("dev-a"), client_id="dev-a") as a:
        # Every device topic, and a service-side one, claimed for dev-b; all dropped.
        spoof = DeviceState(online=True, session=7).encode()
        await a.publish(device_topic("dev-b", DeviceTopic.STATE), spoof, retain=True)
        await a.publish(device_topic("dev-b", DeviceTopic.BIRTH), _birth(7))
        hb = Heartbeat(seq=1, session=7, mode="offload").encode()
        await a.publish(device_topic("dev-b", DeviceTopic.HB), hb)
        await a.publish(
            device_topic("dev-b", DeviceTopic.CMD), Command(cmd="rebirth", reason="test").encode()
        )
        echo = Echo(seq=1, session=7, sent_ms=1.0, padding=b"").encode()
        await a.publish(device_topic("dev-b", DeviceTopic.ECHO, service.instance), echo)
        reply = EchoReply(seq=1, sent_ms=1.0).encode()
        await a.publish(device_topic("dev-b", DeviceTopic.ECHO_REPLY), reply)
        await a.publish(device_topic("dev-a", DeviceTopic.ASSIGN), b"self-assigned")
        # Then its own birth: the broker handles one client's publishes in order, so once
        # this arrives the ones above would have.
        await a.publish(device_topic("dev-a", DeviceTopic.BIRTH), _birth(1))
        await observer.expect(device_topic("dev-a", DeviceTopic.BIRTH), timeout=10)
        await service.wait_until(lambda: service.registry.get("dev-a") is not None, timeout=10)
    assert service.registry.get("dev-b") is None
    assert _under("dev-b", observer.messages) == []
    assert b"self-assigned" not in [m.payload for m in observer.messages]
    assert service.counters.errors == 0


def _mqtt_string(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


async def _crash_with_will(
    broker: SecuredBroker, client_id: str, account: str, will_topic: str, will: bytes
) -> int:
    """Connect with a retained will, then drop the TCP connection without DISCONNECT, as a
    crashing device does; returns the CONNACK return code (0: accepted)."""
    flags = 0x80 | 0x40 | 0x20 | 0x04 | 0x02  # username, password, will retain, will, clean
    body = _mqtt_string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30)
    for field in (client_id.encode(), will_topic.encode(), will, account.encode()):
        body += _mqtt_string(field)
    body += _mqtt_string(broker.passwords[account].encode())
    assert len(body) < 128  # one-byte remaining length
    reader, writer = await asyncio.open_connection(broker.address.host, broker.address.port)
    try:
        writer.write(bytes([0x10, len(body)]) + body)
        await writer.drain()
        connack = await asyncio.wait_for(reader.readexactly(4), 10)
    except asyncio.IncompleteReadError:
        return -1  # closed without a CONNACK: refused as well
    finally:
        writer.transport.abort()
    assert connack[0] == 0x20, connack
    return connack[3]


async def test_a_device_cannot_leave_a_will_for_another(
    secured_broker: SecuredBroker, observer: MqttProbe
) -> None:
    """amqtt refuses the CONNECT; Mosquitto 2.0 accepts it and drops the will when it fires."""
    forged = DeviceState(online=False, session=99).encode()
    code = await _crash_with_will(
        secured_broker, "dev-a", "dev-a", device_topic("dev-b", DeviceTopic.STATE), forged
    )
    assert code != 0 or secured_broker.kind == "mosquitto"
    # Its own will, after that one: once it arrives, the forged one would have.
    own = DeviceState(online=False, session=1).encode()
    code = await _crash_with_will(
        secured_broker, "dev-a", "dev-a", device_topic("dev-a", DeviceTopic.STATE), own
    )
    assert code == 0
    await observer.expect(device_topic("dev-a", DeviceTopic.STATE), timeout=10)
    assert _under("dev-b", observer.messages) == []


async def test_a_device_reads_nothing_of_anothers(
    secured_broker: SecuredBroker,
    service: Service,
    observer: MqttProbe,
    sciot_models: dict[str, ModelPackage],
) -> None:
    """dev-a tries `#`, dev-b's results and decisions, after dev-b's retained state and
    decisions exist and while it infers; dev-a gets only what is its own."""
    received: list[Inbound] = []
    async with device_on(secured_broker, "dev-b", sciot_models) as b:
        await b.wait_until(lambda: b.mode == "offload", timeout=15)
        await observer.expect(device_topic("dev-b", DeviceTopic.SPLIT), timeout=10)
        # dev-b's state, assign and split are retained on the broker now: a subscription
        # that covered them would be sent them at once.
        async with MqttSession(secured_broker.as_user("dev-a"), client_id="dev-a") as a:
            refused: list[str] = []
            for wanted in (
                "#",
                "sciot/v1/#",
                "sciot/v1/dev/+/result",
                device_topic("dev-b", DeviceTopic.RESULT),
                device_topic("dev-b", DeviceTopic.SPLIT),
                device_topic("dev-b", DeviceTopic.ASSIGN),
                device_topic("dev-b", DeviceTopic.INFER, service.instance),
                device_topic("dev-b", DeviceTopic.ECHO, service.instance),
                device_topic("dev-b", DeviceTopic.ECHO_REPLY),
            ):
                # Mosquitto grants and filters each delivery; amqtt refuses the subscription.
                with contextlib.suppress(AccessDeniedError):
                    await a.subscribe(wanted)
                    continue
                refused.append(wanted)
            if secured_broker.kind == "amqtt":
                assert len(refused) == 9
            own_cmd = device_topic("dev-a", DeviceTopic.CMD)
            await a.subscribe(own_cmd)
            marker_seen = asyncio.Event()

            async def collect() -> None:
                async for message in a.messages():
                    received.append(message)
                    if message.topic == own_cmd:
                        marker_seen.set()

            reader = asyncio.create_task(collect())
            try:
                b.settings.split = 5  # offload now, not the first decision's probe
                record = await b.infer(next(synthetic_images(seed=1)), verify=True)
                assert record.path == "offload" and record.matches_local
                await observer.expect(device_topic("dev-b", DeviceTopic.RESULT), timeout=10)
                # A marker dev-a may read, sent after dev-b's traffic: once it is here,
                # anything of dev-b's the broker would have delivered to dev-a is here too.
                async with MqttSession(
                    secured_broker.as_user(OPERATOR), client_id=OPERATOR
                ) as service_side:
                    marker = Command(cmd="rebirth", reason="test").encode()
                    await service_side.publish(own_cmd, marker)
                await asyncio.wait_for(marker_seen.wait(), 10)
            finally:
                reader.cancel()
    foreign = [m.topic for m in received if not m.topic.startswith("sciot/v1/dev/dev-a/")]
    foreign = [t for t in foreign if not t.startswith("sciot/v1/service/")]
    assert foreign == [], f"dev-a received others' messages: {foreign}"
    assert _under("dev-b", received) == []


async def test_a_device_with_credentials_works_end_to_end(
    secured_broker: SecuredBroker,
    service: Service,
    observer: MqttProbe,
    sciot_models: dict[str, ModelPackage],
) -> None:
    async with device_on(secured_broker, "dev-a", sciot_models) as device:
        await device.wait_until(lambda: device.mode == "offload", timeout=15)
        assert device.assignment is not None and device.assignment.model == "fomo96"
        images = synthetic_images(seed=2)
        for split in (0, 5):
            device.settings.split = split
            record = await device.infer(next(images), verify=True)
            assert (record.path, record.split) == ("offload", split), record.reason
            assert record.matches_local
    assert service.results_published == 2
    await observer.expect(device_topic("dev-a", DeviceTopic.RESULT))
