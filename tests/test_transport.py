"""The aiomqtt adapter on both brokers: what goes in comes out as our own types, wills fire
on a cut connection, failures surface as our errors."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sciot_mqtt.broker import free_port
from sciot_mqtt.errors import ConnectionLostError
from sciot_mqtt.transport import Backoff, BrokerAddress, Inbound, LastWill, MqttSession


async def _next(session: MqttSession, topic: str) -> Inbound:
    async for message in session.messages():
        if message.topic == topic:
            return message
    raise AssertionError("unreachable: messages() raises when the connection ends")


async def test_publish_reaches_a_subscriber_with_its_flags(sciot_broker: BrokerAddress) -> None:
    async with (
        MqttSession(sciot_broker, client_id="t-pub") as pub,
        MqttSession(sciot_broker, client_id="t-sub") as sub,
    ):
        await sub.subscribe("t/live")
        await pub.publish("t/live", b"\x00\x01binary", qos=1)
        message = await asyncio.wait_for(_next(sub, "t/live"), 5)
        assert message == Inbound("t/live", b"\x00\x01binary", retain=False, qos=1)
        await pub.publish("t/kept", b"state", qos=1, retain=True)
        await sub.subscribe("t/kept")
        kept = await asyncio.wait_for(_next(sub, "t/kept"), 5)
        assert kept.payload == b"state" and kept.retain


async def test_a_burst_arrives_whole_and_in_order(sciot_broker: BrokerAddress) -> None:
    """Many packets per read and packets split across reads: every payload intact, in order."""
    sizes = [0, 1, 127, 128, 16383, 16384, 70000, 5, 300000, 2] * 20
    payloads = [bytes([i % 251]) * size + i.to_bytes(4, "big") for i, size in enumerate(sizes)]
    async with (
        MqttSession(sciot_broker, client_id="t-burst-pub", max_inflight=1000) as pub,
        MqttSession(sciot_broker, client_id="t-burst-sub") as sub,
    ):
        await sub.subscribe("t/burst")
        await asyncio.gather(*(pub.publish("t/burst", p, qos=1) for p in payloads))

        async def receive_all() -> list[bytes]:
            got = []
            async for message in sub.messages():
                got.append(message.payload)
                if len(got) == len(payloads):
                    return got
            raise AssertionError("unreachable: messages() raises when the connection ends")

        assert await asyncio.wait_for(receive_all(), 30) == payloads


async def test_nagle_is_off(sciot_broker: BrokerAddress) -> None:
    async with MqttSession(sciot_broker, client_id="t-nodelay") as session:
        sock = session._raw_socket  # paho sees it wrapped in a read buffer
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_a_severed_connection_makes_the_broker_send_the_will(
    sciot_broker: BrokerAddress,
) -> None:
    will = LastWill("t/will", b"gone", qos=1, retain=False)
    async with MqttSession(sciot_broker, client_id="t-watch") as watch:
        await watch.subscribe("t/will")
        victim = MqttSession(sciot_broker, client_id="t-victim", will=will, keepalive=5)
        await victim.__aenter__()
        victim.sever()
        message = await asyncio.wait_for(_next(watch, "t/will"), 10)
        assert message.payload == b"gone"
        await victim.__aexit__(None, None, None)


async def test_a_clean_disconnect_sends_no_will(sciot_broker: BrokerAddress) -> None:
    async with MqttSession(sciot_broker, client_id="t-watch2") as watch:
        await watch.subscribe("t/will2", "t/marker")
        async with MqttSession(
            sciot_broker, client_id="t-polite", will=LastWill("t/will2", b"x", retain=False)
        ):
            pass
        async with MqttSession(sciot_broker, client_id="t-marker") as marker:
            await marker.publish("t/marker", b"after")
        # The marker comes after the polite client left; a will would have come before it.
        first = await asyncio.wait_for(anext(aiter(watch.messages())), 5)
        assert first.topic == "t/marker"


async def test_nobody_listening_is_a_connection_error() -> None:
    closed = BrokerAddress("127.0.0.1", free_port())
    with pytest.raises(ConnectionLostError, match="cannot connect"):
        async with MqttSession(closed, client_id="t-nobody", timeout=2):
            pass


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(0.2, 1.0, jitter=0.0)
    assert [backoff.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.2
    jittery = Backoff(1.0, 1.0, jitter=0.2)
    assert all(0.8 <= jittery.next() <= 1.2 for _ in range(100))
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


async def test_a_publish_awaiting_its_ack_fails_as_soon_as_the_connection_drops(
    sciot_broker: BrokerAddress,
) -> None:
    """Not after the session's timeout: the service counts the result lost and goes on."""
    async with MqttSession(sciot_broker, client_id="t-drop", timeout=60) as session:
        await session.publish("t/before", b"ok", qos=1)
        session.sever()
        with pytest.raises(ConnectionLostError):
            async with asyncio.timeout(10):
                await session.publish("t/after", b"lost", qos=1)
        with pytest.raises(ConnectionLostError):
            async with asyncio.timeout(10):
                await _next(session, "t/never")
