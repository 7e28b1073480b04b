"""The fleet's tests run on Mosquitto (the issue's acceptance), once: the devices' broker is it."""

from __future__ import annotations

import pytest_asyncio

from sciot_mqtt.transport import BrokerAddress


@pytest_asyncio.fixture
async def sciot_broker(sciot_mosquitto: BrokerAddress) -> BrokerAddress:
    return sciot_mosquitto
