"""A login the broker refuses stops the service and the device: retrying cannot help."""

from __future__ import annotations

import sys
from pathlib import Path

from sciot_mqtt.device import Device
from sciot_mqtt.errors import AccessDeniedError
from sciot_mqtt.service import Service
from sciot_mqtt.settings import DeviceSettings, ServiceSettings
from tests.processes import spawn
from tests.security.conftest import INSTANCE, SERVICE, SecuredBroker


async def test_device_with_a_wrong_password_stops_with_the_reason(
    secured_broker: SecuredBroker,
) -> None:
    settings = DeviceSettings(_env_file=None, id="dev-a")  # type: ignore[call-arg]
    async with Device(settings, secured_broker.as_user("dev-a", "wrong-password")) as device:
        await device.wait_until(lambda: device.failure is not None, timeout=10)
        await device.ended()
    assert isinstance(device.failure, AccessDeniedError)
    assert "check the username and password" in str(device.failure)
    assert device.summary().connects == 0


async def test_service_with_a_wrong_password_stops_with_the_reason(
    secured_broker: SecuredBroker,
) -> None:
    settings = ServiceSettings(_env_file=None, instance=INSTANCE)  # type: ignore[call-arg]
    address = secured_broker.as_user(SERVICE, "wrong-password")
    async with Service(settings, address) as service:
        await service.ended()
        assert not service.alive
    assert isinstance(service.failure, AccessDeniedError)


async def test_up_with_a_wrong_password_exits_1_and_says_why(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("wrong-password\n")
    argv = [
        sys.executable,
        "-m",
        "sciot_mqtt",
        "up",
        "--external-broker",
        "--host",
        secured_broker.address.host,
        "--port",
        str(secured_broker.address.port),
        "--password-file",
        str(tmp_path / "pw"),
        "--models",
        "fomo96",
    ]
    env = {"PATH": "/usr/bin:/bin", "SCIOT_MODEL_CACHE": str(tmp_path / "models")}
    async with spawn(argv, env, tmp_path, "up") as up:
        assert await up.wait(timeout=60) == 1
        assert "check the username and password" in up.output()
