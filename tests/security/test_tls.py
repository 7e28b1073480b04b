"""TLS on Mosquitto: the service and a device over TLS with client certificates and logins;
clients the broker or they themselves must not trust are refused."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sciot_mqtt.broker import MosquittoBroker
from sciot_mqtt.broker.mosquitto import TlsListener
from sciot_mqtt.creds import PasswordFile
from sciot_mqtt.device import Device
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.errors import ConfigurationError, ConnectionLostError
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import ServiceState, ServiceTopic, service_topic
from sciot_mqtt.protocol.accounts import service_client_id
from sciot_mqtt.service import Service
from sciot_mqtt.settings import DeviceSettings, ServiceSettings
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import BrokerAddress, Credentials, MqttSession, TlsConfig
from tests.processes import spawn
from tests.security.certs import ScratchCA
from tests.security.conftest import ACL_FILE

SERVICE = service_client_id("edge")  # the committed ACL has accounts for instance edge


@dataclasses.dataclass
class TlsBroker:
    address: BrokerAddress  # the TLS listener, no client settings yet
    ca: ScratchCA
    rogue: ScratchCA  # a CA the broker does not trust
    passwords: dict[str, str]

    def client(
        self, account: str, *, ca: ScratchCA | None = None, cert: ScratchCA | None = None
    ) -> BrokerAddress:
        """`account` over TLS trusting `ca`, with a client certificate signed by `cert`."""
        issued = (cert or self.ca).issue(f"{account}-client", account)
        tls = TlsConfig(str((ca or self.ca).cert), str(issued.cert), str(issued.key))
        return dataclasses.replace(
            self.address, tls=tls, credentials=Credentials(account, self.passwords[account])
        )


@pytest_asyncio.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[TlsBroker]:
    ca = ScratchCA(tmp_path / "ca")
    rogue = ScratchCA(tmp_path / "rogue", name="rogue CA")
    server = ca.issue("server", "mosquitto", server_names=("localhost", "127.0.0.1"))
    passwords = {SERVICE: "service-pw", "cam-1": "cam-pw"}
    store = PasswordFile.load(tmp_path / "passwd", missing_ok=True)
    for account, password in passwords.items():
        store.add(account, password)
    store.save()
    try:
        broker = MosquittoBroker(
            password_file=store.path,
            acl_file=ACL_FILE,
            tls=TlsListener(ca.cert, server.cert, server.key),
        )
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    async with broker:
        yield TlsBroker(broker.tls_address, ca, rogue, passwords)


async def test_service_and_device_infer_over_tls(
    tls_broker: TlsBroker, sciot_models: dict[str, ModelPackage]
) -> None:
    settings = ServiceSettings(_env_file=None, instance="edge", heartbeat_interval=0.5)  # type: ignore[call-arg]
    service_address = tls_broker.client(SERVICE)
    async with Service(settings, service_address, packages=sciot_models) as service:
        await service.connected(timeout=10)
        device_settings = DeviceSettings(
            _env_file=None, id="cam-1", heartbeat_interval=0.5, split=5
        )  # type: ignore[call-arg]
        async with Device(
            device_settings, tls_broker.client("cam-1"), packages=sciot_models
        ) as device:
            await device.wait_until(lambda: device.mode == "offload", timeout=15)
            record = await device.infer(next(synthetic_images(seed=4)), verify=True)
            assert (record.path, record.split) == ("offload", 5), record.reason
            assert record.matches_local
        assert service.results_published == 1
        assert not service.internal_errors


async def _refused(address: BrokerAddress) -> str:
    with pytest.raises(ConnectionLostError) as caught:
        async with MqttSession(address, client_id="intruder", timeout=5):
            pass
    return str(caught.value)


async def test_untrusted_certificates_are_refused(tls_broker: TlsBroker) -> None:
    # Right password, client certificate from a CA the broker does not trust.
    await _refused(tls_broker.client("cam-1", cert=tls_broker.rogue))
    # A client that does not trust the broker's certificate refuses it itself.
    message = await _refused(tls_broker.client("cam-1", ca=tls_broker.rogue))
    assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message
    # No client certificate at all.
    bare = dataclasses.replace(tls_broker.client("cam-1"), tls=TlsConfig(str(tls_broker.ca.cert)))
    await _refused(bare)
    # Plain MQTT on the TLS port.
    plain = dataclasses.replace(tls_broker.client("cam-1"), tls=None)
    await _refused(plain)
    # And the control: the right certificate and password get in.
    async with MqttSession(tls_broker.client("cam-1"), client_id="cam-1", timeout=5):
        pass


async def test_up_command_over_tls(
    tls_broker: TlsBroker, cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`sciot-mqtt up --external-broker` with the TLS flags and a password file."""
    client = tls_broker.ca.issue("service-cli", SERVICE)
    secret = tmp_path / "service.password"
    secret.write_text(tls_broker.passwords[SERVICE])
    tls = ["--tls-ca", str(tls_broker.ca.cert), "--tls-cert", str(client.cert)]
    tls += ["--tls-key", str(client.key)]
    argv = [*cli, "up", "--external-broker", "--host", "127.0.0.1"]
    argv += ["--port", str(tls_broker.address.port), "--password-file", str(secret), *tls]
    state = service_topic("edge", ServiceTopic.STATE)
    async with spawn(argv, cli_env, tmp_path, "up") as up:
        async with MqttProbe(tls_broker.client("cam-1"), state, client_id="cam-1") as probe:
            await probe.expect_message(ServiceState, state, lambda s: s.online, timeout=30)
        up.signal(signal.SIGTERM)
        assert await up.wait(timeout=10) == 0, up.output()
        assert f"(TLS, user {SERVICE})" in up.output()

    embedded = await asyncio.create_subprocess_exec(
        *cli, "up", "--port", "0", *tls, env=cli_env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(embedded.communicate(), 60)
    assert embedded.returncode == 1 and b"TLS is for --external-broker" in err
