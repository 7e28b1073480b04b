"""The retained per-device explanation (`explain`), from the real service to a real broker."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from sciot_mqtt.device import Device
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.network.link import LinkProfile
from sciot_mqtt.protocol import (
    DeviceTopic,
    ServiceStats,
    ServiceTopic,
    SplitDecision,
    SplitExplanation,
    device_topic,
    service_topic,
)
from sciot_mqtt.service import Service
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory

ESP32 = "esp32s3:0.05"  # as in test_decisions_live.py: far slower than the edge
CRAWL = LinkProfile("crawl", latency_ms=30, jitter_ms=3, uplink_kbps=200, downlink_kbps=400, loss=0)


@pytest.fixture
def sciot_service_settings(sciot_service_settings: ServiceSettings) -> ServiceSettings:
    # Deterministic decisions; predictions that merely moved wait a minute, so every
    # explanation in these tests is due to a decision or a presence change.
    return sciot_service_settings.model_copy(
        update={"probe_probability": 0.0, "explain_interval": 60.0}
    )


@pytest.fixture
def images() -> Iterator[np.ndarray]:
    return synthetic_images(seed=11)


async def infer_until(
    device: Device, images: Iterator[np.ndarray], done: object, limit: int
) -> None:
    for count in itertools.count(1):
        await device.infer(next(images))
        if done():  # type: ignore[operator]
            return
        assert count < limit, f"not reached after {limit} inferences: {device.decision}"


def explanations(probe: MqttProbe, device_id: str, since: int = 0) -> list[SplitExplanation]:
    topic = device_topic(device_id, DeviceTopic.EXPLAIN)
    return [SplitExplanation.decode(m.payload) for m in probe.messages[since:] if m.topic == topic]


async def test_a_decision_is_explained_with_every_split_point_and_in_agreement(
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
    images: Iterator[np.ndarray],
) -> None:
    n = sciot_models["fomo96"].num_ops
    device = await sciot_device_factory("esp", network="wifi", profile=ESP32, kind="esp32s3")
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    await infer_until(device, images, lambda: device.decision.mode == "offload", limit=10)  # type: ignore[union-attr]
    split = device.decision
    assert split is not None
    explained = await sciot_probe.expect_message(
        SplitExplanation,
        device_topic("esp", DeviceTopic.EXPLAIN),
        lambda e: e.decision is not None and e.decision.decision == split.decision,
        timeout=5,
    )
    assert (explained.instance, explained.model, explained.ops) == ("test", "fomo96", n)
    assert (explained.presence, explained.kind) == ("online", "esp32s3")
    decision = explained.decision
    assert decision is not None and (decision.split, decision.mode) == (split.split, split.mode)
    assert decision.predicted_ms is not None
    assert f"{decision.predicted_ms:.1f} ms predicted" in decision.reason
    # The first decisions (the probe) are history now, newest first.
    assert explained.history and explained.history[0].decision < decision.decision
    predicted = explained.predicted
    assert predicted is not None and len(predicted.bytes) == n + 1
    totals = [
        d + lk + q + e
        for d, lk, q, e in zip(
            predicted.device_ms,
            predicted.link_ms,
            predicted.queue_ms,
            predicted.edge_ms,
            strict=True,
        )
    ]
    # The curve the decision came from: its point is the prediction sent with it (the
    # explanation is built a moment later, so the queue estimate may have moved a little).
    assert totals[decision.split] == pytest.approx(decision.predicted_ms, rel=0.2, abs=1.0)
    assert predicted.device_ms[0] == 0.0 and predicted.edge_ms[n] == 0.0
    assert predicted.device_ms[n] > 50 * predicted.edge_ms[0]  # an ESP32 against this edge
    # The link fit the prediction used (its prior until round trips are measured).
    assert explained.link is not None and explained.link.latency_ms > 0
    assert explained.measured and all(m.total_ms > 0 for m in explained.measured)
    # Retained: a dashboard that connects later gets it at once.
    async with MqttProbe(
        sciot_probe.broker, device_topic("esp", DeviceTopic.EXPLAIN), client_id="late"
    ) as late:
        retained = await late.expect_message(
            SplitExplanation, device_topic("esp", DeviceTopic.EXPLAIN)
        )
        assert retained.decision is not None


async def test_explanations_follow_decisions_not_inferences(
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
    images: Iterator[np.ndarray],
) -> None:
    n = sciot_models["fomo96"].num_ops
    device = await sciot_device_factory("esp", network="wifi", profile=ESP32)
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    for _ in range(12):
        await device.infer(next(images))
    device.link.set_profile(CRAWL)
    await infer_until(
        device, images, lambda: device.decision is not None and device.decision.split == n, 10
    )
    local = device.decision
    assert local is not None
    explained = await sciot_probe.expect_message(
        SplitExplanation,
        device_topic("esp", DeviceTopic.EXPLAIN),
        lambda e: e.decision is not None and e.decision.decision == local.decision,
    )
    assert explained.decision is not None and explained.decision.reason.startswith("device only")
    assert any(h.mode == "offload" for h in explained.history)
    decisions = [
        m for m in sciot_probe.messages if m.topic == device_topic("esp", DeviceTopic.SPLIT)
    ]
    inferences = [
        m for m in sciot_probe.messages if m.topic == device_topic("esp", DeviceTopic.INFER)
    ]
    # Never per inference: at most one explanation per decision (close ones coalesce).
    assert len(explanations(sciot_probe, "esp")) <= len(decisions) < len(inferences)
    assert all(SplitDecision.decode(d.payload) for d in decisions)


async def test_stats_carry_the_inferences_and_latencies_of_the_interval(
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
    sciot_probe: MqttProbe,
    images: Iterator[np.ndarray],
) -> None:
    device = await sciot_device_factory("esp", network="wifi", profile=ESP32)
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    mark = sciot_probe.mark()
    for _ in range(6):
        await device.infer(next(images))
    stats = await sciot_probe.expect_message(
        ServiceStats,
        service_topic("test", ServiceTopic.STATS),
        lambda s: s.window is not None and s.window.samples > 0,
        since=mark,
    )
    window = stats.window
    assert window is not None and window.latency_p50_ms is not None
    assert window.latency_p99_ms is not None and window.latency_p99_ms >= window.latency_p50_ms
    assert window.offloaded + window.local > 0


async def test_a_device_that_leaves_is_shown_offline_at_once(
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
    sciot_probe: MqttProbe,
) -> None:
    device = await sciot_device_factory("leaver", network="wifi", profile=ESP32)
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    topic = device_topic("leaver", DeviceTopic.EXPLAIN)
    await sciot_probe.expect_message(SplitExplanation, topic, lambda e: e.presence == "online")
    mark = sciot_probe.mark()
    await device.stop()
    # Not after explain_interval (60 s here): a change of presence goes out at the next tick.
    gone = await sciot_probe.expect_message(
        SplitExplanation, topic, lambda e: e.presence == "offline", since=mark, timeout=5
    )
    assert gone.model == "fomo96"
