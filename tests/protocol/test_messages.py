from __future__ import annotations

import math
from pathlib import Path

import msgpack
import pytest
from pydantic import ValidationError

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.protocol import (
    ALL_MESSAGES,
    Assign,
    Birth,
    DeviceAddress,
    DeviceState,
    DeviceTopic,
    ErrorReport,
    Heartbeat,
    LocalTimings,
    ServiceAddress,
    ServiceTopic,
    SplitDecision,
    device_topic,
    is_valid_device_id,
    parse_topic,
)
from sciot_mqtt.protocol.codec import TIMING_MAX_MS
from sciot_mqtt.protocol.docs import update

BIRTH = Birth(protocol=1, session=9, kind="python", models=["fomo96"], max_payload=65536)


def test_roundtrip_keeps_every_field() -> None:
    assert Birth.decode(BIRTH.encode()) == BIRTH
    report = ErrorReport(code=ErrorCode.INVALID, reason="x", topic="hb", seq=4)
    assert ErrorReport.decode(report.encode()) == report


def test_optional_fields_are_left_out_of_the_wire() -> None:
    assert "fw" not in msgpack.unpackb(BIRTH.encode())


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    data = msgpack.unpackb(BIRTH.encode()) | {"future_field": [1, 2]}
    assert Birth.decode(msgpack.packb(data)) == BIRTH


def test_int_is_accepted_where_a_float_is_expected() -> None:
    raw = {"model": "m", "session": 1, "hb_interval_s": 5, "max_payload": 4096, "instance": "e"}
    assert Assign.decode(msgpack.packb(raw)).hb_interval_s == 5.0


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", ErrorCode.MALFORMED),
        (b"\xc1", ErrorCode.MALFORMED),  # a byte msgpack never uses
        (msgpack.packb({"a": 1}) + b"\x01", ErrorCode.MALFORMED),  # trailing data
        (msgpack.packb("a string"), ErrorCode.MALFORMED),
        (msgpack.packb({1: 2}), ErrorCode.MALFORMED),  # non-string key
        (b"\x81\xa1a\xa2\xff\xfe", ErrorCode.MALFORMED),  # invalid UTF-8 value
        (msgpack.packb({}), ErrorCode.INVALID),
        (msgpack.packb({"online": 1, "session": 3}), ErrorCode.INVALID),  # 1 is not a bool
        (msgpack.packb({"online": True, "session": -1}), ErrorCode.INVALID),
        (msgpack.packb({"online": True, "session": 2**32}), ErrorCode.INVALID),
        (msgpack.packb({"online": True, "session": "7"}), ErrorCode.INVALID),
        (b"\x00" * 5000, ErrorCode.TOO_LARGE),
    ],
)
def test_bad_payloads_raise_protocol_errors_with_codes(payload: bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        DeviceState.decode(payload)
    assert caught.value.code is code


def test_model_ids_in_birth_are_validated() -> None:
    raw = msgpack.unpackb(BIRTH.encode()) | {"models": ["ok", "not/ok"]}
    with pytest.raises(ProtocolError, match=r"models\.1"):
        Birth.decode(msgpack.packb(raw))


def test_heartbeat_mode_is_an_enumeration() -> None:
    raw = {"seq": 1, "session": 2, "mode": "turbo"}
    with pytest.raises(ProtocolError) as caught:
        Heartbeat.decode(msgpack.packb(raw))
    assert caught.value.code is ErrorCode.INVALID


@pytest.mark.parametrize(
    ("device_id", "valid"),
    [
        ("cam-1", True),
        ("a", True),
        ("ESP32_s3.lab", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("-leading", False),
        ("a/b", False),
        ("a+b", False),
        ("a#", False),
        ("with space", False),
        ("ünï", False),
    ],
)
def test_device_ids(device_id: str, valid: bool) -> None:
    assert is_valid_device_id(device_id) is valid


def test_parse_topic() -> None:
    assert parse_topic(device_topic("cam-1", DeviceTopic.HB)) == DeviceAddress(
        "cam-1", DeviceTopic.HB
    )
    assert parse_topic("sciot/v1/service/edge/stats") == ServiceAddress("edge", ServiceTopic.STATS)
    for outside in ("sciot/v1/dev/x/unknown", "sciot/v2/dev/x/hb", "sciot/v1/dev/x/hb/y", "a"):
        assert parse_topic(outside) is None


def test_every_message_has_a_documented_topic_and_fields() -> None:
    for message in ALL_MESSAGES:
        assert message.__doc__, message.__name__
        assert message.QOS in (0, 1)


def test_topics_md_tables_match_the_code() -> None:
    path = Path(__file__).parents[2] / "topics.md"
    current = path.read_text()
    assert update(current) == current, (
        "topics.md is out of date: python -m sciot_mqtt.protocol.docs --write topics.md"
    )


def test_a_sender_caps_a_long_prediction_and_a_receiver_rejects_it() -> None:
    """The service's prediction sums many in-range terms; it saturates rather than fail, and
    what arrives over the limit is invalid, as in the C decoder (tests/golden)."""
    decision = SplitDecision(
        decision=1, model="m", split=3, mode="offload", reason="r", predicted_ms=3e9
    )
    assert decision.predicted_ms == TIMING_MAX_MS
    assert SplitDecision.decode(decision.encode()) == decision
    raw = msgpack.unpackb(decision.encode()) | {"predicted_ms": 3e9}
    with pytest.raises(ProtocolError) as caught:
        SplitDecision.decode(msgpack.packb(raw))
    assert caught.value.code is ErrorCode.INVALID


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0])
def test_no_sender_builds_a_non_finite_or_negative_timing(bad: float) -> None:
    with pytest.raises(ValidationError):
        SplitDecision(decision=1, model="m", split=3, mode="offload", reason="r", predicted_ms=bad)
    with pytest.raises(ValidationError):
        LocalTimings(
            seq=1, session=1, model="m", reason="local", device_ms=[1.0, bad], detections=[]
        )


def test_a_measured_time_over_the_limit_is_not_sent() -> None:
    with pytest.raises(ValidationError):
        LocalTimings(
            seq=1,
            session=1,
            model="m",
            reason="local",
            device_ms=[TIMING_MAX_MS * 2],
            detections=[],
        )
