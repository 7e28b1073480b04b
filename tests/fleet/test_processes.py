"""`sciot-mqtt up --processes N`: N instances as processes beside the embedded broker."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from sciot_mqtt.broker import free_port, until_accepting
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import ServiceState, ServiceTopic, service_topic
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory
from sciot_mqtt.transport import BrokerAddress
from tests.processes import spawn

pytestmark = pytest.mark.asyncio


async def test_up_runs_n_instances_that_serve_devices_and_stop_cleanly(
    sciot_models: dict[str, ModelPackage],
    sciot_device_factory: DeviceFactory,
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    port = free_port()
    cache = next(iter(sciot_models.values())).directory.parent
    argv = [*cli, "up", "--port", str(port), "--processes", "2", "--model-cache", str(cache)]
    argv += ["--heartbeat-interval", "0.5", "--stats-interval", "0.5"]
    address = BrokerAddress("127.0.0.1", port)
    async with spawn(argv, cli_env, tmp_path, "up") as up:
        await asyncio.wait_for(until_accepting(address), 60)
        async with MqttProbe(address, "sciot/v1/service/+/state", client_id="watch") as watch:
            for name in ("edge-1", "edge-2"):
                topic = service_topic(name, ServiceTopic.STATE)
                await watch.expect_message(ServiceState, topic, lambda s: s.online, timeout=60)
            devices = [await sciot_device_factory(f"p-{i}", broker=address) for i in range(4)]
            for device in devices:
                await device.wait_until(lambda d=device: d.mode == "offload", timeout=20)
            assert {d.assignment.instance for d in devices if d.assignment} <= {
                "edge-1",
                "edge-2",
            }
            mark = watch.mark()
            up.signal(signal.SIGTERM)
            for name in ("edge-1", "edge-2"):
                topic = service_topic(name, ServiceTopic.STATE)
                await watch.expect_message(
                    ServiceState, topic, lambda s: not s.online, since=mark, timeout=30
                )
        assert await up.wait(30) == 0, up.output()[-3000:]
