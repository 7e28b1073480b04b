"""compose.yaml, proven without Docker: the local `mosquitto` runs the very files compose
mounts, the service runs with the environment compose sets and the Dockerfile's command,
both health checks pass, and a device gets results through the TLS listener.

Only what a container runtime would provide is rewritten: mount paths become host paths,
published ports become free ones, the `mosquitto` host name becomes 127.0.0.1, and the files
an operator provides (password file, certificates, the service's password) are generated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sciot_mqtt.broker import MosquittoBroker, free_port
from sciot_mqtt.creds import PasswordFile, generate_password
from sciot_mqtt.protocol import ServiceState, ServiceTopic, service_topic
from sciot_mqtt.protocol.accounts import health_client_id, service_client_id
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import Credentials
from tests.processes import spawn
from tests.security.certs import ScratchCA

REPO = Path(__file__).parents[2]
COMMITTED = {"./mosquitto/mosquitto.conf", "./mosquitto/acl"}
OPERATOR_PROVIDED = {
    "./mosquitto/passwd",
    "./mosquitto/certs",
    "./mosquitto/service.password",
    "./mosquitto/health.password",
}
SERVICE, HEALTH = service_client_id("edge"), health_client_id("edge")

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class NativeCompose:
    """Container paths of compose.yaml mapped to host paths, and published ports to free ones."""

    root: Path  # stands for the repository checkout, for operator-provided files
    paths: dict[str, Path]  # container path -> host path
    ports: dict[int, int]  # container port -> host port

    def rewrite(self, text: str) -> str:
        for inside in sorted(self.paths, key=len, reverse=True):
            text = text.replace(inside, str(self.paths[inside]))
        return text


def _operator_files(root: Path) -> tuple[dict[str, str], ScratchCA]:
    """What README.md tells an operator to create, made the same way."""
    accounts = (SERVICE, HEALTH, "cam-1", "operator")
    passwords = {account: generate_password() for account in accounts}
    store = PasswordFile.load(root / "mosquitto" / "passwd", missing_ok=True)
    for account, password in passwords.items():
        store.add(account, password)
    store.save()
    (root / "mosquitto" / "service.password").write_text(passwords[SERVICE] + "\n")
    (root / "mosquitto" / "health.password").write_text(passwords[HEALTH] + "\n")
    ca = ScratchCA(root / "mosquitto" / "certs")
    ca.issue("server", "mosquitto", server_names=("mosquitto", "localhost", "127.0.0.1"))
    return passwords, ca


def _source(root: Path, source: str) -> Path:
    if source in COMMITTED:
        return REPO / source
    assert source in OPERATOR_PROVIDED, f"compose.yaml mounts {source}; teach this test about it"
    return root / source


def _map(compose: dict[str, Any], name: str, root: Path, mapped: NativeCompose) -> None:
    service = compose["services"][name]
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mapped.paths[target] = _source(root, source)
        else:  # a named volume: a fresh folder, as Docker gives on first start
            assert source in compose["volumes"], source
            folder = root / "volumes" / source
            folder.mkdir(parents=True, exist_ok=True)
            mapped.paths[target] = folder
    for secret in service.get("secrets", []):
        mapped.paths[f"/run/secrets/{secret}"] = _source(root, compose["secrets"][secret]["file"])
    for port in service.get("ports", []):
        inside = int(str(port).rsplit(":", 1)[1])
        mapped.ports[inside] = free_port()


def _mosquitto_config(mapped: NativeCompose, target: Path) -> Path:
    conf = (mapped.paths["/mosquitto/config/mosquitto.conf"]).read_text()
    conf = mapped.rewrite(conf)
    conf = re.sub(
        r"^listener (\d+)$", lambda m: f"listener {mapped.ports[int(m[1])]}", conf, flags=re.M
    )
    if os.geteuid() == 0:
        conf += "user root\n"  # as root, mosquitto would switch to a user who cannot read tmp
    target.write_text(conf)
    return target


def _dockerfile_command() -> list[str]:
    line = next(
        line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")
    )
    argv: list[str] = json.loads(line.removeprefix("CMD "))
    assert argv[0] == "sciot-mqtt"
    return argv[1:]


async def _shell_ok(command: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(errors="replace")


async def test_compose_configuration_serves_devices_natively(
    tmp_path: Path, cli: list[str], cli_env: dict[str, str]
) -> None:
    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto clients not installed")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    mosquitto, service = compose["services"]["mosquitto"], compose["services"]["service"]
    assert mosquitto["image"].startswith("eclipse-mosquitto:2")
    assert service["build"] == "." and (REPO / "Dockerfile").exists()

    root = tmp_path / "checkout"
    passwords, ca = _operator_files(root)
    mapped = NativeCompose(root, {}, {})
    for name in ("mosquitto", "service"):
        _map(compose, name, root, mapped)
    plain, tls = mapped.ports[1883], mapped.ports[8883]
    config = _mosquitto_config(mapped, tmp_path / "mosquitto.conf")

    broker = MosquittoBroker(config_file=config, port=plain, workdir=tmp_path)
    async with broker:
        # The broker's health check, as compose runs it in the container.
        check = mosquitto["healthcheck"]["test"]
        assert check[0] == "CMD-SHELL"
        command = mapped.rewrite(check[1].replace("$$", "$")).replace("-p 1883", f"-p {plain}")
        code, output = await _shell_ok(command, cli_env)
        assert code == 0, output

        # The service: compose's environment, where the `mosquitto` host is this machine.
        env = dict(cli_env)
        for key, value in service["environment"].items():
            value = mapped.rewrite(str(value))
            if key == "SCIOT_HOST" and value == "mosquitto":
                value = "127.0.0.1"
            if key == "SCIOT_PORT":
                value = str(plain)
            env[key] = value
        env["SCIOT_STATS_INTERVAL"] = "1"  # the health check waits at most 2 intervals + 2 s
        argv = [*cli, *_dockerfile_command()]
        async with spawn(argv, env, tmp_path, "service") as up:
            # Watched with an account of its own: the service's would take the service's session.
            login = dataclasses.replace(
                broker.address, credentials=Credentials("operator", passwords["operator"])
            )
            state_topic = service_topic(env["SCIOT_INSTANCE"], ServiceTopic.STATE)
            async with MqttProbe(login, state_topic, client_id="operator") as probe:
                await probe.expect_message(
                    ServiceState, state_topic, lambda s: s.online, timeout=60
                )

            # The service's health check, with the container's environment.
            health = service["healthcheck"]["test"]
            assert health[:2] == ["CMD", "sciot-mqtt"]
            code, output = await _shell_ok(" ".join([*cli, *health[2:]]), env)
            assert code == 0, output

            # A device on the TLS listener, with its certificate and password.
            client = ca.issue("cam-1", "cam-1")
            secret = tmp_path / "cam-1.password"
            secret.write_text(passwords["cam-1"])
            device_argv = [
                *cli, "device", "--id", "cam-1", "--host", "127.0.0.1", "--port", str(tls),
                "--count", "3", "--split", "5", "--wait", "30",
                "--password-file", str(secret), "--tls-ca", str(ca.cert),
                "--tls-cert", str(client.cert), "--tls-key", str(client.key),
                "--model-cache", env["SCIOT_MODEL_CACHE"],
            ]  # fmt: skip
            async with spawn(device_argv, cli_env, tmp_path, "device") as device:
                assert await device.wait(timeout=120) == 0, device.output()
                summary = device.last_json_line()
            inference = summary["inference"]
            assert isinstance(inference, dict)
            assert inference["offloaded"] == 3, summary
            assert inference["all_match_local"] is True
            up.signal(signal.SIGTERM)
            assert await up.wait(timeout=20) == 0, up.output()[-3000:]
