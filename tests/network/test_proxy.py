"""The link-emulating proxy, with real sockets: what MQTT measures through it matches the
profile, and a device offloads through it."""

from __future__ import annotations

import numpy as np
import pytest

from sciot_mqtt.network import DownlinkResponder, LinkProxy, measure_link
from sciot_mqtt.network.link import load_link_profile
from sciot_mqtt.service import Service
from sciot_mqtt.testing.plugin import DeviceFactory
from sciot_mqtt.transport import BrokerAddress


def assert_near(measured: float, expected: float, tolerance: float, what: str) -> None:
    assert expected * (1 - tolerance) <= measured <= expected * (1 + tolerance), (
        f"{what}: measured {measured:.1f}, profile says {expected:.1f} (±{tolerance:.0%})"
    )


@pytest.mark.parametrize("name", ["lte", "wifi"])
async def test_round_trip_and_throughput_follow_the_profile(
    sciot_broker: BrokerAddress, name: str
) -> None:
    profile = load_link_profile(name)
    async with DownlinkResponder(sciot_broker), LinkProxy(profile, sciot_broker) as proxy:
        figures = await measure_link(proxy.address)
        assert proxy.stats.connections == 1
        assert proxy.stats.bytes["up"] > 390_000 and proxy.stats.bytes["down"] > 390_000
    # A ping crosses the link twice; the broker and loopback add little on top.
    assert_near(figures["rtt_ms"], 2 * profile.latency_ms + 1.5, 0.5, "median round trip (ms)")
    assert_near(figures["uplink_kbps"], profile.uplink_kbps, 0.3, "uplink (kbit/s)")
    assert_near(figures["downlink_kbps"], profile.downlink_kbps, 0.3, "downlink (kbit/s)")


async def test_loss_shows_as_retransmission_stalls(sciot_broker: BrokerAddress) -> None:
    lossy = load_link_profile("lossy")
    async with DownlinkResponder(sciot_broker), LinkProxy(lossy, sciot_broker, seed=3) as proxy:
        figures = await measure_link(proxy.address, pings=60, bulk_bytes=100_000)
        stalls = proxy.stats.retransmissions["up"] + proxy.stats.retransmissions["down"]
    assert stalls > 0
    # A stalled ping waits a retransmission timeout (>= 200 ms) on top of the round trip.
    assert figures["rtt_ms"] < 100 < figures["rtt_max_ms"]


async def test_a_device_offloads_through_the_proxy(
    sciot_broker: BrokerAddress,
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
) -> None:
    lte = load_link_profile("lte")
    async with LinkProxy(lte, sciot_broker) as proxy:
        device = await sciot_device_factory("via-proxy", broker=proxy.address, split=6)
        await device.wait_until(lambda: device.mode == "offload", timeout=20)
        image = np.random.default_rng(0).random((96, 96, 3), dtype=np.float32)
        record = await device.infer(image, verify=True)
        assert record.path == "offload"
        assert record.matches_local
        # The result crossed the emulated link both ways: at least one round trip of latency.
        assert record.rtt_ms is not None and record.rtt_ms >= 2 * lte.latency_ms * 0.5
        assert proxy.stats.connections >= 1
