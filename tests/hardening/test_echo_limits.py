"""Echoes (topics.md, rule 8) on a real broker: validated like every message, answered at
once only for a device served here, and never beyond the reply budget."""

from __future__ import annotations

import time

import msgpack
import pytest

from sciot_mqtt.errors import ErrorCode
from sciot_mqtt.protocol import (
    ECHO_PADDING_MAX,
    DeviceTopic,
    Echo,
    EchoReply,
    ErrorReport,
    device_topic,
)
from sciot_mqtt.service import Service
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.testing import MqttProbe
from tests.hardening.test_limits import register

REPLY_RATE = 5.0  # replies a second, twice that at once


@pytest.fixture
def sciot_service_settings(sciot_service_settings: ServiceSettings) -> ServiceSettings:
    return sciot_service_settings.model_copy(update={"reply_rate": REPLY_RATE})


async def test_echoes_are_validated_answered_at_once_and_within_the_reply_budget(
    sciot_service: Service, sciot_probe: MqttProbe
) -> None:
    echo_topic = device_topic("echoer", DeviceTopic.ECHO, sciot_service.instance)
    reply_topic = device_topic("echoer", DeviceTopic.ECHO_REPLY)
    error_topic = device_topic("echoer", DeviceTopic.ERROR)
    # Not registered: answered on `error`, not echoed.
    stray = Echo(seq=1, session=3, sent_ms=5.0, padding=b"")
    await sciot_probe.publish(echo_topic, stray.encode())
    refused = await sciot_probe.expect_message(ErrorReport, error_topic)
    assert (refused.code, refused.topic, refused.seq) == (ErrorCode.NOT_REGISTERED, "echo", None)
    await register(sciot_service, sciot_probe, "echoer", session=3)
    # Padding over the bound: invalid, whatever else is right.
    mark = sciot_probe.mark()
    too_much = {"seq": 2, "session": 3, "sent_ms": 5.0, "padding": bytes(ECHO_PADDING_MAX + 1)}
    await sciot_probe.publish(echo_topic, msgpack.packb(too_much, use_bin_type=True))
    invalid = await sciot_probe.expect_message(ErrorReport, error_topic, since=mark)
    assert invalid.code == ErrorCode.INVALID
    # Another session's echo is not this device's now.
    old = Echo(seq=2, session=2, sent_ms=5.0, padding=b"")
    await sciot_probe.publish(echo_topic, old.encode())
    await sciot_probe.expect_message(
        ErrorReport, error_topic, lambda e: e.code == ErrorCode.NOT_REGISTERED, since=mark
    )
    # A good one: the reply carries its seq and the device's clock, as sent.
    echo = Echo(seq=3, session=3, sent_ms=123.25, padding=bytes(256))
    await sciot_probe.publish(echo_topic, echo.encode())
    reply = await sciot_probe.expect_message(EchoReply, reply_topic, since=mark)
    assert (reply.seq, reply.sent_ms) == (3, 123.25)
    # A flood: counted, and answered no faster than the budget refills.
    budget = sciot_service.replies
    rx, dropped = sciot_service.counters.rx, budget.refused
    flood = 10 * int(budget.burst)
    mark = sciot_probe.mark()
    started = time.monotonic()
    for seq in range(100, 100 + flood):
        await sciot_probe.publish(
            echo_topic, Echo(seq=seq, session=3, sent_ms=1.0, padding=b"").encode()
        )
    await sciot_service.wait_until(lambda: sciot_service.counters.rx >= rx + flood, timeout=10)
    elapsed = time.monotonic() - started
    answered = flood - (budget.refused - dropped)
    assert 0 < answered <= budget.burst + REPLY_RATE * elapsed + 1
    # those went out, one reply each
    seqs = set()
    for _ in range(answered):
        got = await sciot_probe.expect_message(
            EchoReply, reply_topic, lambda r: r.seq not in seqs, since=mark
        )
        seqs.add(got.seq)
    assert seqs <= set(range(100, 100 + flood))
