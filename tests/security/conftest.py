"""Brokers with logins and the project's ACLs: embedded amqtt and Mosquitto, same files."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from sciot_mqtt.broker import EmbeddedBroker, MosquittoBroker
from sciot_mqtt.creds import SERVICE_ACCOUNT, PasswordFile, generate_password
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.transport import BrokerAddress, Credentials

ACL_FILE = Path(__file__).parents[2] / "mosquitto" / "acl"
ACCOUNTS = (SERVICE_ACCOUNT, "dev-a", "dev-b")


@dataclass
class SecuredBroker:
    """A running broker that requires logins, and the passwords of its accounts."""

    kind: str
    address: BrokerAddress  # anonymous; `as_user` adds a login
    passwords: dict[str, str]
    password_file: Path

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


@pytest_asyncio.fixture(params=["amqtt", "mosquitto"])
async def secured_broker(
    request: pytest.FixtureRequest, password_file: tuple[Path, dict[str, str]]
) -> AsyncIterator[SecuredBroker]:
    path, passwords = password_file
    if request.param == "amqtt":
        async with EmbeddedBroker(port=0, credentials_file=path) as embedded:
            yield SecuredBroker("amqtt", embedded.address, passwords, path)
    else:
        try:
            # The committed ACL file, exactly as compose.yaml mounts it.
            broker = MosquittoBroker(password_file=path, acl_file=ACL_FILE)
        except ConfigurationError as exc:
            pytest.skip(str(exc))
        async with broker:
            yield SecuredBroker("mosquitto", broker.address, passwords, path)
