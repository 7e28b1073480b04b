"""mosquitto/README.md's set-up for a system Mosquitto (Debian package), run natively: the
package's main configuration with the README's `conf.d/sciot.conf`, paths moved to a
temporary folder and ports to free ones."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import pytest

from sciot_mqtt.broker import MosquittoBroker, free_port
from sciot_mqtt.creds import PasswordFile
from sciot_mqtt.errors import ConnectionLostError
from sciot_mqtt.protocol import DeviceTopic, device_topic
from sciot_mqtt.protocol.accounts import service_client_id
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import BrokerAddress, Credentials, MqttSession, TlsConfig
from tests.security.certs import ScratchCA

REPO = Path(__file__).parents[2]
SERVICE = service_client_id("edge")  # the account the committed ACL names
# What Debian's mosquitto package installs as /etc/mosquitto/mosquitto.conf.
DEBIAN_MAIN = """\
pid_file /run/mosquitto/mosquitto.pid
persistence true
persistence_location /var/lib/mosquitto/
log_dest file /var/log/mosquitto/mosquitto.log
include_dir /etc/mosquitto/conf.d
"""


def _readme_snippet() -> str:
    readme = (REPO / "mosquitto" / "README.md").read_text()
    after = readme.split("`/etc/mosquitto/conf.d/sciot.conf`:", 1)[1]
    match = re.search(r"```\n(.*?)```", after, flags=re.S)
    assert match is not None, "mosquitto/README.md lost its conf.d/sciot.conf block"
    return match[1]


async def test_readme_conf_d_snippet_on_debians_main_config(tmp_path: Path) -> None:
    if shutil.which("mosquitto") is None and shutil.which("mosquitto", path="/usr/sbin") is None:
        pytest.skip("mosquitto not installed")
    root = tmp_path / "root"
    for folder in ("etc/mosquitto/conf.d", "etc/mosquitto/certs", "var/lib/mosquitto",
                   "var/log/mosquitto", "run/mosquitto"):  # fmt: skip
        (root / folder).mkdir(parents=True)

    def moved(text: str) -> str:
        return re.sub(r"(?<![\w/])/(etc|var|run)/", lambda m: f"{root}/{m[1]}/", text)

    plain, tls = free_port(), free_port()
    # The same guarantees as the shipped mosquitto.conf: client ids bound on every listener,
    # the same packet limit.
    shipped = (REPO / "mosquitto" / "mosquitto.conf").read_text()
    for block in re.split(r"^listener ", _readme_snippet(), flags=re.M)[1:]:
        assert re.search(r"^use_username_as_clientid true$", block, flags=re.M), block
    limit = re.compile(r"^max_packet_size \d+$", flags=re.M)
    assert limit.findall(_readme_snippet()) == limit.findall(shipped) != []
    snippet = _readme_snippet().replace("listener 1883 ", f"listener {plain} ")
    snippet = snippet.replace("listener 8883", f"listener {tls}")
    (root / "etc/mosquitto/conf.d/sciot.conf").write_text(moved(snippet))
    main = moved(DEBIAN_MAIN) + ("user root\n" if os.geteuid() == 0 else "")
    (root / "etc/mosquitto/mosquitto.conf").write_text(main)

    store = PasswordFile.load(root / "etc/mosquitto/passwd", missing_ok=True)
    store.add(SERVICE, "service-pw")
    store.add("cam-1", "cam-pw")
    store.save()
    shutil.copy(REPO / "mosquitto" / "acl", root / "etc/mosquitto/acl")
    ca = ScratchCA(root / "etc/mosquitto/certs")
    ca.issue("server", "edge", server_names=("localhost", "127.0.0.1"))
    client = ca.issue("cam-1-client", "cam-1")

    config = root / "etc/mosquitto/mosquitto.conf"
    async with MosquittoBroker(config_file=config, port=plain, workdir=tmp_path):
        local = BrokerAddress("127.0.0.1", plain)
        with pytest.raises(ConnectionLostError, match="requires a username and password"):
            async with MqttSession(local, client_id="anonymous"):
                pass
        service = dataclasses.replace(local, credentials=Credentials(SERVICE, "service-pw"))
        topic = device_topic("cam-1", DeviceTopic.HB)
        async with MqttProbe(service, topic, client_id=SERVICE) as probe:
            device = BrokerAddress(
                "127.0.0.1",
                tls,
                tls=TlsConfig(str(ca.cert), str(client.cert), str(client.key)),
                credentials=Credentials("cam-1", "cam-pw"),
            )
            async with MqttSession(device, client_id="cam-1") as session:
                await session.publish(topic, b"over TLS")
            assert (await probe.expect(topic, timeout=10)).payload == b"over TLS"
