"""The embedded amqtt broker: a real listener on a free port, gone when the block ends."""

from __future__ import annotations

import asyncio

import pytest

from sciot_mqtt.broker import EmbeddedBroker
from sciot_mqtt.errors import ConfigurationError, ConnectionLostError
from sciot_mqtt.transport import MqttSession


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_port_zero_binds_a_free_port_and_frees_it_on_exit() -> None:
    async with EmbeddedBroker(port=0) as one, EmbeddedBroker(port=0) as two:
        assert one.address.port != two.address.port
        assert one.address.port > 0
        async with MqttSession(one.address, client_id="e-client") as session:
            await session.publish("e/t", b"x")
        address = one.address
    assert not await _accepts(address.host, address.port)
    with pytest.raises(ConnectionLostError):
        async with MqttSession(address, client_id="e-late", timeout=2):
            pass
    with pytest.raises(RuntimeError, match="not running"):
        _ = one.address


def test_exposure_without_credentials_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="credentials"):
        EmbeddedBroker(host="0.0.0.0", port=0)
