"""Limits of the contract on a real broker: duplicates are idempotent, sequence numbers
wrap, ids are validated, every rejection is logged with the device id and answered on the
device's `error` topic, and none of it disturbs a well-behaved device."""

from __future__ import annotations

import msgpack
import structlog

from sciot_mqtt.device import Device
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    ADDRESSED,
    PROTOCOL_VERSION,
    U32_MAX,
    Birth,
    DeviceTopic,
    ErrorReport,
    InferResult,
    device_topic,
)
from sciot_mqtt.service import Service
from sciot_mqtt.testing import MqttProbe
from tests.hardening.support import request


async def register(service: Service, probe: MqttProbe, device_id: str, session: int) -> None:
    birth = Birth(
        protocol=PROTOCOL_VERSION, session=session, kind="t", models=["fomo96"], max_payload=10**6
    )
    await probe.publish(device_topic(device_id, DeviceTopic.BIRTH), birth.encode())
    await service.wait_until(
        lambda: (
            (r := service.registry.get(device_id)) is not None
            and r.registered
            and r.session == session
        ),
        timeout=5,
    )


def results_for(probe: MqttProbe, device_id: str, seq: int, since: int = 0) -> list[bytes]:
    topic = device_topic(device_id, DeviceTopic.RESULT)
    return [
        m.payload
        for m in probe.messages[since:]
        if m.topic == topic and InferResult.decode(m.payload).seq == seq
    ]


async def test_redelivered_infer_runs_once_and_is_answered_alike(
    sciot_service: Service,
    sciot_device: Device,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
) -> None:
    package = sciot_models["fomo96"]
    dev, topic = "twice", device_topic("twice", DeviceTopic.INFER, sciot_service.instance)
    await register(sciot_service, sciot_probe, dev, session=40)
    payload = request(package, seq=9, session=40).encode()
    answered = sciot_service.counters.answered

    # Back to back (the copy may arrive while the first runs: dropped, its answer is coming),
    # then once more after the answer (sent again from the recent cache).
    await sciot_probe.publish(topic, payload)
    await sciot_probe.publish(topic, payload)
    result_topic = device_topic(dev, DeviceTopic.RESULT)
    await sciot_probe.expect(result_topic)
    await sciot_service.wait_until(lambda: sciot_service.counters.duplicates == 1, timeout=5)
    mark = sciot_probe.mark()
    await sciot_probe.publish(topic, payload)
    await sciot_probe.expect(result_topic, since=mark)
    await sciot_service.wait_until(lambda: sciot_service.counters.duplicates == 2, timeout=5)

    await sciot_service.wait_until(lambda: sciot_service.counters.running == 0, timeout=5)
    assert sciot_service.counters.answered == answered + 1, "the tail ran more than once"
    copies = results_for(sciot_probe, dev, seq=9)
    assert 2 <= len(copies) <= 3 and len(set(copies)) == 1, "answers differ"

    # Same session and seq with other content is a device bug, answered on `error`.
    mark = sciot_probe.mark()
    await sciot_probe.publish(topic, request(package, seq=9, session=40, fill=1).encode())
    error = await sciot_probe.expect_message(
        ErrorReport, device_topic(dev, DeviceTopic.ERROR), since=mark
    )
    assert (error.code, error.seq) == ("invalid", 9) and "seq 9" in error.reason

    # A new connection numbers afresh: the same seq in a new session is a new request.
    await register(sciot_service, sciot_probe, dev, session=41)
    mark = sciot_probe.mark()
    await sciot_probe.publish(topic, request(package, seq=9, session=41).encode())
    await sciot_probe.expect(result_topic, since=mark)
    await sciot_service.wait_until(
        lambda: sciot_service.counters.answered == answered + 2, timeout=5
    )

    # The well-behaved device never noticed any of it.
    sciot_device.settings.split = 2
    record = await sciot_device.infer(next(synthetic_images()), verify=True)
    assert record.path == "offload" and record.matches_local
    assert sciot_device.summary().errors_received == 0


async def test_sequence_numbers_wrap_at_2_32(
    sciot_service: Service, sciot_models: dict[str, ModelPackage], sciot_probe: MqttProbe
) -> None:
    """Across the wrap every request is new; a redelivery after it is still recognised."""
    package = sciot_models["fomo96"]
    dev = "wrapper"
    await register(sciot_service, sciot_probe, dev, session=U32_MAX)
    answered = sciot_service.counters.answered
    seqs = [U32_MAX - 1, U32_MAX, 0, 1]
    for fill, seq in enumerate(seqs):
        mark = sciot_probe.mark()
        payload = request(package, seq=seq, session=U32_MAX, fill=fill).encode()
        await sciot_probe.publish(
            device_topic(dev, DeviceTopic.INFER, sciot_service.instance), payload
        )
        result = await sciot_probe.expect_message(
            InferResult, device_topic(dev, DeviceTopic.RESULT), since=mark
        )
        assert result.seq == seq
    await sciot_service.wait_until(
        lambda: sciot_service.counters.answered == answered + 4, timeout=5
    )
    assert sciot_service.counters.duplicates == 0

    mark = sciot_probe.mark()
    again = request(package, seq=U32_MAX, session=U32_MAX, fill=1).encode()
    await sciot_probe.publish(device_topic(dev, DeviceTopic.INFER, sciot_service.instance), again)
    await sciot_probe.expect(device_topic(dev, DeviceTopic.RESULT), since=mark)
    assert sciot_service.counters.duplicates == 1
    assert sciot_service.counters.answered == answered + 4


async def test_ids_are_validated_and_every_rejection_is_logged_with_the_device_id(
    sciot_service: Service,
    sciot_device: Device,
    sciot_models: dict[str, ModelPackage],
    sciot_probe: MqttProbe,
) -> None:
    package = sciot_models["fomo96"]
    await register(sciot_service, sciot_probe, "valid-1", session=3)
    good_birth = Birth(
        protocol=PROTOCOL_VERSION, session=1, kind="t", models=["fomo96"], max_payload=4096
    )
    cases: list[tuple[str, DeviceTopic, bytes, str]] = [
        ("x" * 65, DeviceTopic.BIRTH, good_birth.encode(), "invalid_device_id"),
        ("caf\u00e9", DeviceTopic.BIRTH, good_birth.encode(), "invalid_device_id"),
        ("-lead", DeviceTopic.HB, b"", "invalid_device_id"),
        (
            "bad-model",
            DeviceTopic.BIRTH,
            msgpack.packb(good_birth.model_dump() | {"models": ["../etc"]}),
            "invalid",
        ),
        (
            "valid-1",
            DeviceTopic.INFER,
            msgpack.packb(request(package, 1, 3).model_dump() | {"model": "a b"}),
            "invalid",
        ),
        (
            "valid-1",
            DeviceTopic.TIMINGS,
            msgpack.packb({"pad": b"\0" * 70_000}),
            "too_large",
        ),
        (
            "valid-1",
            DeviceTopic.INFER,
            msgpack.packb({"pad": b"\0" * (sciot_service.settings.max_payload + 1)}),
            "too_large",
        ),
    ]
    errors_before = sciot_service.counters.errors
    with structlog.testing.capture_logs() as logs:
        for device_id, kind, payload, code in cases:
            mark = sciot_probe.mark()
            to = sciot_service.instance if kind in ADDRESSED else None
            await sciot_probe.publish(device_topic(device_id, kind, to), payload)
            error = await sciot_probe.expect_message(
                ErrorReport, device_topic(device_id, DeviceTopic.ERROR), since=mark
            )
            assert (error.code, error.topic) == (code, kind.value), (device_id, error.reason)
        # An id too long to answer on is still logged, with the id cut short.
        huge = "y" * 600
        await sciot_probe.publish(device_topic(huge, DeviceTopic.BIRTH), good_birth.encode())
        await sciot_service.wait_until(
            lambda: sciot_service.counters.errors == errors_before + len(cases) + 1, timeout=5
        )
    rejected = [e for e in logs if e["event"] == "message rejected"]
    assert [e["device_id"] for e in rejected] == [c[0] for c in cases] + [huge[:80]]
    assert all(e["log_level"] == "warning" and e["code"] for e in rejected)
    assert all(not r.device_id.startswith("x" * 65) for r in sciot_service.registry)
    assert sciot_service.registry.get("caf\u00e9") is None

    sciot_device.settings.split = 4
    record = await sciot_device.infer(next(synthetic_images()), verify=True)
    assert record.path == "offload" and record.matches_local
