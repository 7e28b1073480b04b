"""Split inference over a real broker (amqtt and Mosquitto) with the real int8 model."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest

from sciot_mqtt.device import Device
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models import ModelPackage, SegmentRunner
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    Birth,
    DeviceTopic,
    ErrorReport,
    InferRequest,
    InferResult,
    LocalTimings,
    SplitDecision,
    device_topic,
)
from sciot_mqtt.protocol.tensors import encode_tensor
from sciot_mqtt.service import Service
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory


async def test_every_split_point_gives_the_whole_models_output(
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
) -> None:
    package = sciot_models["fomo96"]
    device = await sciot_device_factory("splitter")
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    images = synthetic_images(seed=3)
    for split in package.split_points:
        device.settings.split = split
        for _ in range(2):
            record = await device.infer(next(images), verify=True)
            assert record.matches_local, f"split {split}: differs from the whole model"
            if split < package.num_ops:
                assert (record.path, record.split) == ("offload", split), record.reason
                assert record.sent_bytes >= package.boundaries[split].nbytes
            else:
                assert record.path == "local" and record.reason == "pinned"
    timings = await sciot_probe.expect_message(
        LocalTimings, device_topic("splitter", DeviceTopic.TIMINGS, sciot_service.instance)
    )
    assert timings.reason == "pinned" and len(timings.device_ms) == package.num_ops
    assert sciot_service.results_published == 2 * package.num_ops


async def test_result_carries_the_output_and_edge_times(
    sciot_service: Service,
    sciot_device: Device,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
) -> None:
    package = sciot_models["fomo96"]
    sciot_device.settings.split = 3
    image = next(synthetic_images(seed=11))
    record = await sciot_device.infer(image)
    result = await sciot_probe.expect_message(
        InferResult, device_topic("device-1", DeviceTopic.RESULT), lambda r: r.seq == record.seq
    )
    whole = SegmentRunner(package).run_whole(package.quantize_input(image))
    assert result.output.data == whole.tobytes()
    # Protocol 2: the device decodes the output itself; the result has no detections.
    assert "detections" not in msgpack.unpackb(result.encode())
    assert [d[:3] for d in record.detections] == [
        (d.class_id, d.x, d.y) for d in package.decode(whole)
    ]
    assert len(result.edge_ms) == package.num_ops - 3 and all(t >= 0 for t in result.edge_ms)
    assert result.service_ms >= sum(result.edge_ms) * 0.5


async def test_first_decision_probes_the_device_then_offloads_with_a_reason(
    sciot_service: Service,
    sciot_device: Device,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
) -> None:
    """A new device is probed (a timed device-only run) before the service picks its split."""
    package = sciot_models["fomo96"]
    topic = device_topic("device-1", DeviceTopic.SPLIT)
    first = await sciot_probe.expect_message(SplitDecision, topic)
    assert (first.mode, first.split, first.decision) == ("probe", package.num_ops, 1)
    await sciot_device.wait_until(lambda: sciot_device.decision is not None, timeout=5)
    record = await sciot_device.infer(next(synthetic_images()))
    assert (record.path, record.reason) == ("local", "probe")
    timings = await sciot_probe.expect_message(
        LocalTimings, device_topic("device-1", DeviceTopic.TIMINGS, sciot_service.instance)
    )
    assert timings.reason == "probe" and len(timings.device_ms) == package.num_ops
    second = await sciot_probe.expect_message(SplitDecision, topic, lambda d: d.decision == 2)
    assert second.mode in ("offload", "local") and second.predicted_ms is not None
    # A device at host speed is as fast as the edge, so any link cost makes local the best.
    assert (second.mode, second.split) == ("local", package.num_ops)
    assert second.reason.startswith("device only") and "predicted" in second.reason
    assert second.predicted_ms == pytest.approx(sum(timings.device_ms), rel=0.5)
    await sciot_device.wait_until(lambda: sciot_device.decision == second, timeout=5)
    record = await sciot_device.infer(next(synthetic_images()))
    assert (record.path, record.reason) == ("local", "local")


def _request(package: ModelPackage, split: int, session: int, **changes: object) -> InferRequest:
    specs = package.boundaries[split].tensors
    tensors = [encode_tensor(spec, np.zeros(spec.shape, dtype=spec.dtype)) for spec in specs]
    fields: dict[str, object] = {
        "seq": 77,
        "session": session,
        "model": package.model_id,
        "split": split,
        "tensors": tensors,
        "device_ms": [1.0] * split,
    }
    return InferRequest.model_validate(fields | changes)


async def test_requests_that_break_the_manifest_are_answered_with_errors(
    sciot_service: Service,
    sciot_device: Device,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
) -> None:
    package = sciot_models["fomo96"]
    rogue = "rogue"
    await sciot_probe.publish(
        device_topic(rogue, DeviceTopic.BIRTH),
        Birth(
            protocol=PROTOCOL_VERSION, session=5, kind="t", models=["fomo96"], max_payload=10**6
        ).encode(),
    )
    await sciot_service.wait_until(
        lambda: (r := sciot_service.registry.get(rogue)) is not None and r.registered, timeout=5
    )
    good = _request(package, 4, 5)
    spec = package.boundaries[4].tensors[0]
    first = good.tensors[0]
    cases: dict[str, tuple[bytes, str]] = {
        "not registered": (_request(package, 4, 6).encode(), "not_registered"),
        "wrong model": (_request(package, 4, 5, model="other").encode(), "wrong_model"),
        "split N": (_request(package, package.num_ops, 5).encode(), "bad_split"),
        "split far out": (
            _request(package, 4, 5).model_copy(update={"split": 999}).encode(),
            "bad_split",
        ),
        "times missing": (_request(package, 4, 5, device_ms=[1.0]).encode(), "invalid"),
        "wrong index": (
            _request(package, 4, 5, tensors=[first.model_copy(update={"index": 9999})]).encode(),
            "tensor_mismatch",
        ),
        "wrong dtype": (
            _request(package, 4, 5, tensors=[first.model_copy(update={"dtype": "uint8"})]).encode(),
            "tensor_mismatch",
        ),
        "wrong shape": (
            _request(
                package, 4, 5, tensors=[first.model_copy(update={"shape": list(spec.shape)[::-1]})]
            ).encode(),
            "tensor_mismatch",
        ),
        "wrong scale": (
            _request(
                package, 4, 5, tensors=[first.model_copy(update={"scale": spec.scale * 2})]
            ).encode(),
            "tensor_mismatch",
        ),
        "short data": (
            _request(
                package, 4, 5, tensors=[first.model_copy(update={"data": b"\x00" * 10})]
            ).encode(),
            "tensor_mismatch",
        ),
        "oversized": (
            msgpack.packb({"pad": b"\x00" * (sciot_service.settings.max_payload + 1)}),
            "too_large",
        ),
        "not msgpack": (b"\xc1" * 100, "malformed"),
    }
    for label, (payload, code) in cases.items():
        mark = sciot_probe.mark()
        await sciot_probe.publish(
            device_topic(rogue, DeviceTopic.INFER, sciot_service.instance), payload
        )
        error = await sciot_probe.expect_message(
            ErrorReport, device_topic(rogue, DeviceTopic.ERROR), since=mark
        )
        assert error.code == code, f"{label}: {error.reason}"
        if code not in ("too_large", "malformed"):
            assert error.seq == 77, label

    # The same request done right is answered, and the well-behaved device never noticed.
    mark = sciot_probe.mark()
    await sciot_probe.publish(
        device_topic(rogue, DeviceTopic.INFER, sciot_service.instance), good.encode()
    )
    await sciot_probe.expect_message(
        InferResult, device_topic(rogue, DeviceTopic.RESULT), since=mark
    )
    sciot_device.settings.split = 2
    record = await sciot_device.infer(next(synthetic_images()), verify=True)
    assert record.path == "offload" and record.matches_local
    assert sciot_device.summary().errors_received == 0


async def test_device_runs_locally_while_the_service_is_offline(
    sciot_service: Service, sciot_device_factory: DeviceFactory
) -> None:
    device = await sciot_device_factory("alone", split=6)
    await device.wait_until(lambda: device.mode == "offload", timeout=10)
    await sciot_service.stop()
    await device.wait_until(lambda: device.mode == "local", timeout=5)
    record = await device.infer(next(synthetic_images()), verify=True)
    assert (record.path, record.reason) == ("local", "local") and record.matches_local
    assert device.summary().local == 1


async def test_error_reply_makes_the_device_finish_locally(
    sciot_service: Service, sciot_device: Device
) -> None:
    # The registry forgets the device's birth: its requests are now refused with an error
    # that names their seq, and the device completes them itself instead of waiting.
    record_before = sciot_service.registry.get("device-1")
    assert record_before is not None
    record_before.birth = None
    # A heartbeat now asks for a rebirth, which would register it again before its request
    # arrives: hold rebirth requests back for the length of this test.
    record_before.last_rebirth_request = time.monotonic() + 3600
    sciot_device.settings.split = 5
    record = await sciot_device.infer(next(synthetic_images()), verify=True)
    assert (record.path, record.reason) == ("fallback", "error:not_registered")
    assert record.matches_local
    assert sciot_device.summary().fallbacks_local == 1


async def test_device_output_decodes_like_the_package(
    sciot_models: dict[str, ModelPackage],
) -> None:
    package = sciot_models["fomo96"]
    output = SegmentRunner(package).run_whole(package.quantize_input(next(synthetic_images())))
    assert output.dtype == np.int8 and output.shape == package.output.shape
