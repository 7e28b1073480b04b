"""pytest plugin (entry point `pytest11`): brokers, a service and devices as fixtures.

Installed with the package, so `pip install sciot-mqtt` gives any project these fixtures:

- `sciot_broker`: an embedded amqtt broker on a free port (its `BrokerAddress`)
- `sciot_mosquitto`: Mosquitto started from the `mosquitto` binary on a free port
- `sciot_models`: the zoo models, prepared once per test session in a temporary cache
- `sciot_service_settings`: fast timings for tests (override the fixture to change them)
- `sciot_service`: a running, connected service on `sciot_broker`, serving `sciot_models`
- `sciot_device_factory`: `await make("dev-1", **settings)` gives a running device that
  carries `sciot_models` (`broker=` points it elsewhere, e.g. at a `LinkProxy`)
- `sciot_device`: one device, registered and offloading
- `sciot_probe`: an `MqttProbe` recording everything under `sciot/v1/`

A test that overrides `sciot_broker` (e.g. parametrized over both brokers) changes the broker
under every other fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from sciot_mqtt.broker import EmbeddedBroker, MosquittoBroker
from sciot_mqtt.device import Device
from sciot_mqtt.device.emulation import Emulation
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.service import Service
from sciot_mqtt.settings import DeviceSettings, ServiceSettings
from sciot_mqtt.testing.probe import MqttProbe
from sciot_mqtt.transport import BrokerAddress

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

DeviceFactory = Callable[..., Awaitable[Device]]


@pytest.fixture(scope="session")
def sciot_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelPackage]:
    from sciot_mqtt.models import zoo_model_ids
    from sciot_mqtt.models.catalog import resolve_packages

    return resolve_packages(zoo_model_ids(), tmp_path_factory.mktemp("sciot-models"))


@pytest_asyncio.fixture
async def sciot_broker() -> AsyncIterator[BrokerAddress]:
    async with EmbeddedBroker(port=0) as broker:
        yield broker.address


@pytest_asyncio.fixture
async def sciot_mosquitto() -> AsyncIterator[BrokerAddress]:
    try:
        broker = MosquittoBroker()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    async with broker:
        yield broker.address


@pytest.fixture
def sciot_service_settings() -> ServiceSettings:
    return ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        instance="test",
        heartbeat_interval=0.5,
        stats_interval=0.5,
        offline_grace=1.0,
        keepalive=5,
    )


@pytest_asyncio.fixture
async def sciot_service(
    sciot_broker: BrokerAddress,
    sciot_service_settings: ServiceSettings,
    sciot_models: dict[str, ModelPackage],
) -> AsyncIterator[Service]:
    async with Service(sciot_service_settings, sciot_broker, packages=sciot_models) as service:
        await service.connected(timeout=10)
        yield service
    if service.internal_errors:
        pytest.fail("the service failed on a message:\n" + "\n".join(service.internal_errors))


@pytest_asyncio.fixture
async def sciot_device_factory(
    sciot_broker: BrokerAddress, sciot_models: dict[str, ModelPackage]
) -> AsyncIterator[DeviceFactory]:
    devices: list[Device] = []

    async def make(
        device_id: str = "device-1", *, broker: BrokerAddress | None = None, **settings: Any
    ) -> Device:
        values: dict[str, Any] = {"heartbeat_interval": 0.5, "keepalive": 5} | settings
        device_settings = DeviceSettings(_env_file=None, id=device_id, **values)  # type: ignore[call-arg]
        device = Device(
            device_settings,
            broker or sciot_broker,
            packages=sciot_models,
            emulation=Emulation.from_settings(device_settings),
        )
        devices.append(device)
        await device.__aenter__()
        return device

    yield make
    for device in devices:
        await device.stop()


@pytest_asyncio.fixture
async def sciot_device(sciot_device_factory: DeviceFactory, sciot_service: Service) -> Device:
    device = await sciot_device_factory("device-1")
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    return device


@pytest_asyncio.fixture
async def sciot_probe(sciot_broker: BrokerAddress) -> AsyncIterator[MqttProbe]:
    async with MqttProbe(sciot_broker, "sciot/v1/#") as probe:
        yield probe
