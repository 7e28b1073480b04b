"""Measuring off the critical path, on a real broker: a probe asked of an offloading device
is answered beside users' inferences, never in place of one, and a link check is a small
echo beside a local run (issue 18)."""

from __future__ import annotations

import pytest

from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    NAMESPACE,
    DeviceTopic,
    Echo,
    EchoReply,
    InferRequest,
    LocalTimings,
    SplitDecision,
    device_topic,
)
from sciot_mqtt.protocol.linkcheck import (
    ECHO_BANDWIDTH_CAP,
    ECHO_LARGE_PADDING,
    ECHO_LATENCY_CAP,
)
from sciot_mqtt.service import Service
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory
from sciot_mqtt.transport import Inbound

# A chip fast enough (about 40 ms a run) that device-only, were it twice as fast, would beat
# offloading over wifi: its operators' times are worth refreshing while it offloads.
CLOSE_CALL = "esp32s3:0.008"
ESP32 = "esp32s3:0.05"  # about 255 ms a run


@pytest.fixture
def sciot_service_settings(sciot_service_settings: ServiceSettings) -> ServiceSettings:
    # A generous budget, so that a refresh comes within a few inferences.
    return sciot_service_settings.model_copy(update={"measure_budget": 1.0})


async def test_a_probe_of_an_offloading_device_is_answered_beside_its_inferences(
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
) -> None:
    package = sciot_models["fomo96"]
    n = package.num_ops
    images = synthetic_images(seed=7)
    device = await sciot_device_factory("close-call", network="wifi", profile=CLOSE_CALL)
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    records = []
    refreshed = None
    for _ in range(40):
        records.append(await device.infer(next(images), verify=True))
        if device.summary().refreshes >= 1 and records[-1].path == "offload":
            refreshed = records
            break
    assert refreshed is not None, [(r.split, r.reason) for r in records]
    await device.settle_measurements(timeout=10)
    summary = device.summary()
    assert summary.refresh_mismatches == 0
    assert summary.refresh_device_ms > 0 and summary.measure_uplink_bytes > 0
    # Once offloading, no user's inference was turned into a device-only probe run.
    first_offload = next(i for i, r in enumerate(records) if r.path == "offload")
    assert all(r.reason != "probe" for r in records[first_offload:])
    assert all(r.matches_local for r in records)
    # The service asked for a refresh, and got every operator's time under the seq of an
    # inference the device offloaded.
    probes = [
        SplitDecision.decode(m.payload)
        for m in sciot_probe.messages
        if m.topic == device_topic("close-call", DeviceTopic.SPLIT)
    ]
    assert any(
        p.mode == "probe" and p.reason.startswith(("refreshing ops", "unstable ops"))
        for p in probes
    )
    offloaded = {r.seq for r in records if r.path == "offload"}
    timings = await sciot_probe.expect_message(
        LocalTimings,
        device_topic("close-call", DeviceTopic.TIMINGS, sciot_service.instance),
        lambda t: t.reason == "probe" and t.seq in offloaded,
    )
    assert len(timings.device_ms) == n and all(t > 0 for t in timings.device_ms)


async def test_a_link_check_is_an_echo_beside_a_local_run(
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
) -> None:
    images = synthetic_images(seed=8)
    # An ESP32-class chip on a congested link runs locally; a link four times better would
    # make offloading win, so the link is checked now and then.
    device = await sciot_device_factory("kept-local", network="congested", profile=ESP32)
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    checks = []
    for _ in range(30):
        record = await device.infer(next(images), verify=True)
        assert record.matches_local
        if record.reason == "link check beside":
            checks.append(record)
            break
    assert checks, "no link check within 30 inferences"
    await device.settle_measurements(timeout=10)
    # The user got the local run's result and no tensor went out: a small echo did, the
    # service answered it at once, and its round trip is reported with the next message.
    assert all(r.path == "local" and r.sent_bytes == 0 for r in checks)
    first = checks[0].seq
    to_service = device_topic("kept-local", DeviceTopic.ECHO, sciot_service.instance)
    echo = await sciot_probe.expect_message(Echo, to_service, lambda e: e.seq == first)
    # A latency echo (no padding) or a bandwidth one (as much as the budget allows).
    assert echo.padding in (b"", bytes(ECHO_LARGE_PADDING))
    reply = await sciot_probe.expect_message(
        EchoReply,
        device_topic("kept-local", DeviceTopic.ECHO_REPLY),
        lambda r: r.seq == first and r.sent_ms == echo.sent_ms,
    )
    infer_topic = device_topic("kept-local", DeviceTopic.INFER, sciot_service.instance)
    sent = [InferRequest.decode(m.payload) for m in sciot_probe.messages if m.topic == infer_topic]
    assert all(r.seq != first for r in sent)  # the user's inference sent no tensor
    summary = device.summary()
    assert summary.echoes_sent >= 1 and summary.echoes_answered >= 1
    # Within the echo budget: a tenth of what users' inferences sent, plus one saved-up echo
    # of each kind.
    saved = ECHO_LATENCY_CAP + ECHO_BANDWIDTH_CAP
    assert 0 < summary.measure_uplink_bytes <= summary.user_uplink_bytes / 10 + saved
    await device.infer(next(images))

    def reports_first(message: Inbound) -> bool:
        if message.topic == device_topic("kept-local", DeviceTopic.TIMINGS, sciot_service.instance):
            return LocalTimings.decode(message.payload).rtt_seq == first
        return False

    await sciot_probe.expect(f"{NAMESPACE}/dev/kept-local/#", reports_first)
    # The service fitted the link with the echo's round trip, both ways' bytes.
    record = sciot_service.registry.get("kept-local")
    assert record is not None and record.cost is not None
    link = record.cost.link
    echo_bytes = len(echo.encode()) + len(reply.encode())
    await sciot_service.wait_until(
        lambda: any(nbytes == echo_bytes for nbytes, _ in link.samples), timeout=10
    )
