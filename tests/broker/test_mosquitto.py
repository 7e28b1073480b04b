"""Mosquitto as a child process: started on a free port, killed and restarted with its
persisted state, refused on an exposed address without logins."""

from __future__ import annotations

import asyncio

import pytest

from sciot_mqtt.broker import MosquittoBroker
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.transport import Inbound, MqttSession


async def _retained(broker: MosquittoBroker, topic: str) -> Inbound:
    async with MqttSession(broker.address, client_id="m-reader") as reader:
        await reader.subscribe(topic)
        async for message in reader.messages():
            return message
    raise AssertionError("unreachable")


async def test_retained_state_survives_a_kill_with_persistence() -> None:
    async with MosquittoBroker(persistence=True) as broker:
        async with MqttSession(broker.address, client_id="m-writer") as writer:
            await writer.publish("m/state", b"kept", qos=1, retain=True)
        pid = broker.pid
        await broker.stop()  # SIGTERM: Mosquitto writes its database on the way out
        await broker.start()
        assert broker.pid != pid
        message = await asyncio.wait_for(_retained(broker, "m/state"), 10)
        assert message.payload == b"kept" and message.retain


async def test_kill_stops_the_process() -> None:
    async with MosquittoBroker() as broker:
        assert broker.pid is not None
        await broker.kill()
        assert broker.pid is None


def test_exposure_without_a_password_file_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        MosquittoBroker(host="0.0.0.0")
