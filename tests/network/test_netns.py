"""Kernel shaping: a client inside a network namespace, behind a veth pair shaped with tc,
measures the profile's round trip and throughput. Needs root (CI runs as root)."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from sciot_mqtt.network import DownlinkResponder, LinkProxy, NetnsLink, kernel_shaping_unavailable
from sciot_mqtt.network.link import load_link_profile
from sciot_mqtt.transport import BrokerAddress
from tests.network.test_proxy import assert_near

needs_kernel_shaping = pytest.mark.skipif(
    kernel_shaping_unavailable() is not None, reason=str(kernel_shaping_unavailable())
)


async def output(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0, argv
    return out.decode()


@needs_kernel_shaping
async def test_namespace_link_has_the_profile_figures(sciot_mosquitto: BrokerAddress) -> None:
    lte = load_link_profile("lte")
    async with NetnsLink(lte, 201) as link, DownlinkResponder(sciot_mosquitto):
        # Rate in the kernel always; latency, jitter and loss there too when netem exists.
        assert link.shaping.rate_by in ("tbf", "netem")
        qdiscs = await output("tc", "qdisc", "show", "dev", link.host_interface)
        assert link.shaping.rate_by in qdiscs
        async with LinkProxy(
            link.proxy_profile(), sciot_mosquitto, listen_host=link.host_address
        ) as proxy:
            measurer = await asyncio.create_subprocess_exec(
                *link.exec_prefix,
                sys.executable,
                "-m",
                "sciot_mqtt.network",
                "--host",
                proxy.address.host,
                "--port",
                str(proxy.address.port),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(measurer.communicate(), 90)
            assert measurer.returncode == 0, err.decode()
        figures = json.loads(out.decode().strip().splitlines()[-1])
        assert link.namespace in await output("ip", "netns", "list")
    assert_near(figures["rtt_ms"], 2 * lte.latency_ms + 1.5, 0.5, "median round trip (ms)")
    assert_near(figures["uplink_kbps"], lte.uplink_kbps, 0.3, "uplink (kbit/s)")
    assert_near(figures["downlink_kbps"], lte.downlink_kbps, 0.3, "downlink (kbit/s)")
    # Removed on exit, veth pair included.
    assert link.namespace not in await output("ip", "netns", "list")


@needs_kernel_shaping
async def test_a_device_in_the_namespace_cannot_bypass_the_link(
    sciot_mosquitto: BrokerAddress,
) -> None:
    """The broker listens on loopback only: from the namespace, only the proxy is reachable."""
    async with NetnsLink(load_link_profile("wifi"), 202) as link:
        probe = await asyncio.create_subprocess_exec(
            *link.exec_prefix,
            sys.executable,
            "-c",
            "import socket,sys; s=socket.socket(); s.settimeout(3); "
            f"sys.exit(s.connect_ex(('127.0.0.1', {sciot_mosquitto.port})))",
        )
        assert await asyncio.wait_for(probe.wait(), 30) != 0


def test_without_root_the_mode_says_why_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sciot_mqtt.cli import main

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["swarm", "--network", "netns", "--devices", "1", "--duration", "1"]) == 2
    assert "needs root" in capsys.readouterr().err
