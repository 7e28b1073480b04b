"""Any model through the Python device and a real service, on both brokers: each test-zoo
model (classifiers, a keyword spotter on audio features, a float-interface regression) runs
offloaded at several split points and locally, on an emulated ESP32-S3 (estimated times),
and every result is bit-identical to a local run of the whole model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from sciot_mqtt.device import Device
from sciot_mqtt.device.emulation import Emulation
from sciot_mqtt.device.inputs import SyntheticInputs
from sciot_mqtt.device.report import summarize_inferences
from sciot_mqtt.models.tasks import Task
from sciot_mqtt.service import Service
from sciot_mqtt.settings import DeviceSettings, ServiceSettings
from sciot_mqtt.transport import BrokerAddress
from tests.zoo.builders import ZOO, ZooModels


@pytest_asyncio.fixture
async def zoo_service(
    sciot_broker: BrokerAddress,
    sciot_service_settings: ServiceSettings,
    zoo_models: ZooModels,
    zoo_name: str,
) -> AsyncIterator[Service]:
    packages = {zoo_name: zoo_models.package(zoo_name)}
    settings = sciot_service_settings.model_copy(update={"models": [zoo_name]})
    async with Service(settings, sciot_broker, packages=packages) as service:
        await service.connected(timeout=10)
        yield service
    if service.internal_errors:
        pytest.fail("the service failed on a message:\n" + "\n".join(service.internal_errors))


async def test_the_device_runs_any_model_offloaded_and_locally(
    zoo_service: Service, sciot_broker: BrokerAddress, zoo_models: ZooModels, zoo_name: str
) -> None:
    package = zoo_models.package(zoo_name)
    settings = DeviceSettings(
        _env_file=None,  # type: ignore[call-arg]
        id="zoo-device",
        models=[zoo_name],
        heartbeat_interval=0.5,
        keepalive=5,
        profile="esp32s3:0.0005",  # estimated for these models; kept short
    )
    emulation = Emulation.from_settings(settings)
    n = package.num_ops
    splits = sorted({0, 1, n // 2, n - 1, n})
    inputs = SyntheticInputs(seed=5)
    records = []
    async with Device(
        settings, sciot_broker, packages={zoo_name: package}, emulation=emulation
    ) as device:
        await device.wait_until(lambda: device.mode == "offload", timeout=10)
        assert device.assignment is not None and device.assignment.model == zoo_name
        for split in splits:
            device.settings.split = split
            for _ in range(2):
                record = await device.infer(inputs.next_for(package), verify=True)
                want = ("local", split) if split == n else ("offload", split)
                assert (record.path, record.split) == want, record.reason
                records.append(record)
        # Inputs of another shape than the model's: a photo of another size for image
        # models (converted to grayscale for MobileNet v1), a float64 array without batch
        # dimension for the others.
        device.settings.split = n // 2
        shape = package.input_format.image_shape
        rng = np.random.default_rng(9)
        other = (
            rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            if shape
            else rng.uniform(*package.input_format.input_range, package.input.shape[1:])
        )
        records.append(await device.infer(other, verify=True))
        await device.stop()
    assert emulation.chip.emulator(package).profile.estimated
    summary = summarize_inferences(records)
    assert summary["all_match_local"] is True
    assert summary["checked_against_local"] == len(records)
    assert summary["offloaded"] == 2 * (len(splits) - 1) + 1 and summary["local"] == 2
    task = ZOO[zoo_name].task
    assert summary["outputs"][task]["count"] == len(records)
    for record in records:
        assert record.result.task == Task(task)
    assert zoo_service.results_published == summary["offloaded"]
