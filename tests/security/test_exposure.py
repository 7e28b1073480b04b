"""Mosquitto 2's safe default: anonymous only on loopback, credentials for anything else."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
from pathlib import Path

import pytest

from sciot_mqtt.broker import EmbeddedBroker, MosquittoBroker, free_port, until_accepting
from sciot_mqtt.broker.acl import main as acl_main
from sciot_mqtt.broker.exposure import is_loopback
from sciot_mqtt.creds import PasswordFile
from sciot_mqtt.errors import ConfigurationError, ConnectionLostError
from sciot_mqtt.protocol import ServiceState, ServiceTopic, service_topic
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import BrokerAddress, Credentials, MqttSession
from tests.processes import spawn

ACL_FILE = Path(__file__).parents[2] / "mosquitto" / "acl"
NETWORK = "reachable from the network without credentials"


def test_loopback_names() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "mosquitto", "example.org"):
        assert not is_loopback(host), host


def test_committed_acl_file_is_generated_from_the_protocol() -> None:
    assert acl_main(["--check", str(ACL_FILE)]) == 0


def test_brokers_refuse_to_listen_beyond_loopback_without_credentials() -> None:
    with pytest.raises(ConfigurationError, match=NETWORK):
        EmbeddedBroker("0.0.0.0", 0)
    try:
        with pytest.raises(ConfigurationError, match=NETWORK):
            MosquittoBroker(host="0.0.0.0")
    except ConfigurationError as exc:  # no mosquitto binary
        pytest.skip(str(exc))


async def test_embedded_broker_on_every_interface_with_credentials(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    store = PasswordFile.load(path, missing_ok=True)
    store.add("cam-1", "pw")
    store.save()
    async with EmbeddedBroker("0.0.0.0", 0, credentials_file=path) as broker:
        here = BrokerAddress("127.0.0.1", broker.address.port)
        with pytest.raises(ConnectionLostError, match="requires a username and password"):
            async with MqttSession(here, client_id="anonymous"):
                pass
        login = dataclasses.replace(here, credentials=Credentials("cam-1", "pw"))
        async with MqttSession(login, client_id="cam-1"):
            pass


def _up(
    cli: list[str], env: dict[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli, "up", "--port", str(free_port()), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_service_refuses_to_start_exposed_without_credentials(
    cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    embedded = _up(cli, cli_env, tmp_path, "--host", "0.0.0.0")
    assert embedded.returncode == 1
    assert f"the embedded broker on '0.0.0.0' would be {NETWORK}" in embedded.stderr
    assert "sciot-mqtt creds add" in embedded.stderr

    external = _up(cli, cli_env, tmp_path, "--external-broker", "--host", "192.0.2.7")
    assert external.returncode == 1
    assert f"the service's broker connection on '192.0.2.7' would be {NETWORK}" in external.stderr

    passwd = tmp_path / "passwd"
    store = PasswordFile.load(passwd, missing_ok=True)
    store.add("sciot-service-edge", "pw")
    store.save()
    no_login = _up(cli, cli_env, tmp_path, "--host", "0.0.0.0", "--credentials-file", str(passwd))
    assert no_login.returncode == 1
    assert "give the service account's password" in no_login.stderr


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode(errors="replace")


async def test_up_with_logins_on_every_interface(
    cli: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The README's embedded set-up: every interface, logins required, the service logs in,
    and so does its health check, with an account of its own."""
    passwd, secret = tmp_path / "passwd", tmp_path / "service.password"
    health_secret = tmp_path / "health.password"
    store = PasswordFile.load(passwd, missing_ok=True)
    store.add("sciot-service-edge", "service-pw")
    store.add("sciot-health-edge", "health-pw")
    store.add("cam-1", "cam-pw")
    store.save()
    secret.write_text("service-pw\n")
    health_secret.write_text("health-pw\n")
    port = free_port()
    env = cli_env | {"SCIOT_STATS_INTERVAL": "0.5"}
    argv = [*cli, "up", "--host", "0.0.0.0", "--port", str(port)]
    argv += ["--credentials-file", str(passwd), "--password-file", str(secret)]
    here = BrokerAddress("127.0.0.1", port)
    async with spawn(argv, env, tmp_path, "up") as up:
        await asyncio.wait_for(until_accepting(here), 30)
        device = dataclasses.replace(here, credentials=Credentials("cam-1", "cam-pw"))
        state = service_topic("edge", ServiceTopic.STATE)
        async with MqttProbe(device, state, client_id="cam-1") as probe:
            found = await probe.expect_message(ServiceState, state, lambda s: s.online, timeout=30)
            assert found.instance == "edge"
        # The container health check, with the same settings.
        health_env = env | {
            "SCIOT_HOST": "0.0.0.0",
            "SCIOT_PORT": str(port),
            "SCIOT_PASSWORD_FILE": str(secret),
            "SCIOT_HEALTH_PASSWORD_FILE": str(health_secret),
        }
        code, output = await _run([*cli, "health"], health_env)
        assert code == 0, output
        wrong = health_env | {"SCIOT_HEALTH_PASSWORD": "not-it"}
        code, output = await _run([*cli, "health", "--timeout", "5"], wrong)
        assert code == 1 and "check the username and password" in output
        up.signal(signal.SIGTERM)
        assert await up.wait(timeout=10) == 0, up.output()
