"""Brokers with logins and the project's ACLs: embedded amqtt and Mosquitto, same files.

Each broker runs as `sciot-mqtt up` and the shipped `mosquitto/mosquitto.conf` set it up:
client ids bound to accounts, the packet size limit, the generated ACL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from sciot_mqtt.broker import EmbeddedBroker, MosquittoBroker
from sciot_mqtt.broker.acl import INSTANCE as INSTANCE_LEVEL
from sciot_mqtt.broker.acl import Access, render_mosquitto_acl, rules_for
from sciot_mqtt.broker.limits import max_packet_size
from sciot_mqtt.creds import PasswordFile, generate_password
from sciot_mqtt.device import Device
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol.accounts import (
    Role,
    dashboard_client_id,
    health_client_id,
    service_client_id,
)
from sciot_mqtt.service import Service
from sciot_mqtt.settings import DeviceSettings, ServiceSettings
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import BrokerAddress, Credentials

REPO = Path(__file__).parents[2]
ACL_FILE = REPO / "mosquitto" / "acl"
SHIPPED_CONF = REPO / "mosquitto" / "mosquitto.conf"

INSTANCE = "secure"  # the service under test
SERVICE = service_client_id(INSTANCE)
HEALTH = health_client_id(INSTANCE)
DASHBOARD = dashboard_client_id(INSTANCE)
# Service-role accounts of instances that never serve: a test's eyes and hands on the service
# side. They need accounts of their own, since the service's own would take its session.
OBSERVER = service_client_id("observer")
OPERATOR = service_client_id("operator")
SECOND = service_client_id("second")  # a second service instance on the same broker
INSTANCES = (INSTANCE, "observer", "operator", "second")
DEVICES = ("dev-a", "dev-b")
ACCOUNTS = (SERVICE, HEALTH, DASHBOARD, OBSERVER, OPERATOR, SECOND, *DEVICES)
DEFAULT_MAX_PAYLOAD: int = ServiceSettings.model_fields["max_payload"].default


def shipped_max_packet_size() -> int:
    """`max_packet_size` of the shipped mosquitto.conf."""
    found = re.search(r"^max_packet_size (\d+)$", SHIPPED_CONF.read_text(), flags=re.M)
    assert found is not None, "mosquitto.conf sets no max_packet_size"
    return int(found[1])


@dataclass
class SecuredBroker:
    """A running broker that requires logins, and the passwords of its accounts."""

    kind: str
    address: BrokerAddress  # anonymous; `as_user` adds a login
    passwords: dict[str, str]
    password_file: Path
    pid: int | None = None  # Mosquitto's process; None for the in-process amqtt

    def as_user(self, account: str, password: str | None = None) -> BrokerAddress:
        secret = self.passwords[account] if password is None else password
        return dataclasses.replace(self.address, credentials=Credentials(account, secret))


@pytest.fixture
def password_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A password file written by `sciot_mqtt.creds`, with a random password per account."""
    path = tmp_path / "passwd"
    store = PasswordFile.load(path, missing_ok=True)
    passwords = {account: generate_password() for account in ACCOUNTS}
    for account, password in passwords.items():
        store.add(account, password)
    store.save()
    return path, passwords


@pytest.fixture
def acl_file(tmp_path: Path) -> Path:
    """The generated ACL, with accounts for this suite's instances (the committed file has
    the same lines for instance `edge`)."""
    path = tmp_path / "acl"
    path.write_text(render_mosquitto_acl(INSTANCES))
    return path


@pytest_asyncio.fixture(params=["amqtt", "mosquitto"])
async def secured_broker(
    request: pytest.FixtureRequest, password_file: tuple[Path, dict[str, str]], acl_file: Path
) -> AsyncIterator[SecuredBroker]:
    path, passwords = password_file
    if request.param == "amqtt":
        # As `sciot-mqtt up --credentials-file` runs it.
        limit = max_packet_size(DEFAULT_MAX_PAYLOAD)
        async with EmbeddedBroker(port=0, credentials_file=path, max_packet_size=limit) as amqtt:
            yield SecuredBroker("amqtt", amqtt.address, passwords, path)
    else:
        try:
            mosquitto = MosquittoBroker(
                password_file=path, acl_file=acl_file, max_packet_size=shipped_max_packet_size()
            )
        except ConfigurationError as exc:
            pytest.skip(str(exc))
        async with mosquitto:
            yield SecuredBroker("mosquitto", mosquitto.address, passwords, path, mosquitto.pid)


# What every service instance may read (its own instance's topics aside).
SERVICE_READS = [
    rule.topic
    for rule in rules_for(Role.SERVICE)
    if rule.access.allows(Access.READ) and INSTANCE_LEVEL not in rule.topic
]


def service_settings(instance: str = INSTANCE) -> ServiceSettings:
    return ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        instance=instance,
        heartbeat_interval=0.5,
        stats_interval=0.5,
        offline_grace=1.0,
        keepalive=5,
    )


@pytest_asyncio.fixture
async def service(
    secured_broker: SecuredBroker, sciot_models: dict[str, ModelPackage]
) -> AsyncIterator[Service]:
    address = secured_broker.as_user(SERVICE)
    async with Service(service_settings(), address, packages=sciot_models) as running:
        await running.connected(timeout=10)
        yield running
    assert not running.internal_errors


@pytest_asyncio.fixture
async def observer(secured_broker: SecuredBroker) -> AsyncIterator[MqttProbe]:
    """Sees what a service instance may see, with an account of its own."""
    address = secured_broker.as_user(OBSERVER)
    async with MqttProbe(address, *SERVICE_READS, client_id=OBSERVER) as probe:
        yield probe


@contextlib.asynccontextmanager
async def device_on(
    broker: SecuredBroker, device_id: str, models: dict[str, ModelPackage]
) -> AsyncIterator[Device]:
    """A well-behaved device logged in as itself."""
    settings = DeviceSettings(
        _env_file=None,  # type: ignore[call-arg]
        id=device_id,
        heartbeat_interval=0.5,
        keepalive=5,
    )
    async with Device(settings, broker.as_user(device_id), packages=models) as device:
        yield device


async def served(broker: SecuredBroker, device_id: str, models: dict[str, ModelPackage]) -> None:
    """A device joins, is assigned a model and gets an offloaded result that matches."""
    async with device_on(broker, device_id, models) as device:
        await device.wait_until(lambda: device.mode == "offload", timeout=15)
        assert device.assignment is not None
        device.settings.split = 5
        record = await device.infer(next(synthetic_images(seed=3)), verify=True)
        assert (record.path, record.split) == ("offload", 5), record.reason
        assert record.matches_local
