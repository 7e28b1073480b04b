"""The project's own tests use the shipped plugin's fixtures, over both brokers."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sciot_mqtt.broker import EmbeddedBroker, MosquittoBroker
from sciot_mqtt.transport import BrokerAddress
from tests.zoo.builders import ZooModels, zoo_names


@pytest_asyncio.fixture(params=["amqtt", "mosquitto"])
async def sciot_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerAddress]:
    """Overrides the plugin's broker: every test that touches a broker runs on both."""
    if request.param == "amqtt":
        async with EmbeddedBroker(port=0) as embedded:
            yield embedded.address
    else:
        async with MosquittoBroker() as mosquitto:
            yield mosquitto.address


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for `python -m sciot_mqtt` child processes: JSON logs, no stray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIOT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def cli() -> list[str]:
    return [sys.executable, "-m", "sciot_mqtt"]


@pytest.fixture(scope="session")
def zoo_models(tmp_path_factory: pytest.TempPathFactory) -> ZooModels:
    """Third-party architectures (tests/zoo/builders.py), each built once per session when
    a test first asks for it: ``zoo_models.tflite(name)``, ``zoo_models.package(name)``."""
    pytest.importorskip("tensorflow", reason="TensorFlow builds the zoo of test models")
    return ZooModels(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(params=zoo_names())
def zoo_name(request: pytest.FixtureRequest) -> str:
    """Each zoo model in turn (parametrizes the test)."""
    name: str = request.param
    return name
