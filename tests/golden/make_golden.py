"""Golden msgpack vectors of the wire contract, shared by the Python codec and the C core.

`python tests/golden/make_golden.py` (re)writes `tests/golden/*.msgpack`: one valid payload
per message type, encoded by `sciot_mqtt.protocol`, and a few broken ones. A file is named
`<message>__<case>__<expect>.msgpack`, where `<expect>` is `ok` or the error code both
decoders must report (`malformed`, `invalid`, `too_large`). tests/golden/test_golden.py
checks the Python side and that these files are current; firmware-bridge/tests/test_golden.c
decodes every file with the C core, checks the values below, and re-encodes the device's
messages byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgpack

from sciot_mqtt.protocol import (
    Assign,
    Birth,
    Command,
    DeviceCounts,
    DeviceState,
    Echo,
    EchoReply,
    ErrorReport,
    Heartbeat,
    InferRequest,
    InferResult,
    LocalTimings,
    Message,
    MessageRates,
    ServiceState,
    ServiceStats,
    SplitDecision,
    Tensor,
)

HERE = Path(__file__).resolve().parent

_TENSOR = Tensor(
    index=48,
    dtype="int8",
    shape=[1, 2, 2, 3],
    scale=0.0235294122248888,
    zero_point=-128,
    data=bytes((i * 37) & 0xFF for i in range(12)),
)

VALID: dict[str, Message] = {
    "service_state": ServiceState(
        online=True, instance="edge", started_at=1763870400.25, version="0.1.0", protocol=1
    ),
    "service_stats": ServiceStats(
        instance="edge",
        uptime_s=12.5,
        devices=DeviceCounts(online=2, stale=1, offline=0),
        rates=MessageRates(rx=10.0, tx=4.5, errors=0.0),
        rx_total=125,
        tx_total=45,
        errors_total=1,
    ),
    "birth": Birth(
        protocol=1,
        session=4000000000,
        kind="esp32s3",
        models=["fomo96"],
        max_payload=262144,
        fw="sciot-fw 0.1.0",
    ),
    "device_state": DeviceState(online=False, session=7),
    "heartbeat": Heartbeat(seq=65535, session=4294967295, mode="offload"),
    "infer_request": InferRequest(
        seq=300,
        session=70000,
        model="fomo96",
        split=7,
        decision=3,
        tensors=[_TENSOR, _TENSOR.model_copy(update={"index": 49, "shape": [1, 1, 1, 12]})],
        device_ms=[0.5, 1.25, 0.125, 2.0, 0.0, 3.5, 0.75],
        rtt_ms=12.75,
        rtt_seq=299,
    ),
    "local_timings": LocalTimings(
        seq=12,
        session=70000,
        model="fomo96",
        reason="probe",
        device_ms=[1.0, 2.0, 0.5],
    ),
    "echo": Echo(seq=12, session=70000, sent_ms=123456.75, padding=bytes(16)),
    "echo_reply": EchoReply(seq=12, sent_ms=123456.75),
    "assign": Assign(
        model="fomo96", session=70000, hb_interval_s=0.5, max_payload=262144, instance="edge"
    ),
    "split_decision": SplitDecision(
        decision=9,
        model="fomo96",
        split=13,
        mode="offload",
        reason="predicted 4.2 ms",
        predicted_ms=4.25,
    ),
    "infer_result": InferResult(
        seq=300,
        model="fomo96",
        split=7,
        output=_TENSOR.model_copy(update={"index": 67}),
        edge_ms=[0.25, 0.5],
        queue_ms=0.0,
        service_ms=1.5,
    ),
    "command": Command(cmd="rebirth", reason="unknown session"),
    "error_report": ErrorReport(
        code="tensor_mismatch",  # type: ignore[arg-type]
        reason="tensor 48: 12 bytes, want 4608",
        topic="infer",
        seq=300,
    ),
}

MESSAGE_TYPES: dict[str, type[Message]] = {name: type(msg) for name, msg in VALID.items()}


def _raw(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


_SPLIT = VALID["split_decision"].model_dump(exclude_none=True)
_NAN, _INF = float("nan"), float("inf")


def _infer(changes: dict[str, object]) -> bytes:
    return _raw(VALID["infer_request"].model_dump(exclude_none=True) | changes)


def _duplicate_split(first: object, last: object) -> bytes:
    """The decision with `split` given twice; msgpack-python keeps the last."""
    rest = b"".join(_raw(k) + _raw(v) for k, v in _SPLIT.items() if k != "split")
    return (
        bytes([0x80 | (len(_SPLIT) + 1)])
        + _raw("split")
        + _raw(first)
        + rest
        + (_raw("split") + _raw(last))
    )


BROKEN: dict[str, tuple[str, bytes]] = {
    # name: (message, payload); the expected code is in the file name
    "split_decision__not_msgpack__malformed": ("split_decision", b"\xc1\x00"),
    "split_decision__not_a_map__malformed": ("split_decision", _raw([1, 2, 3])),
    "split_decision__trailing_bytes__malformed": ("split_decision", _raw(_SPLIT) + b"\x00"),
    "split_decision__bad_utf8__malformed": ("split_decision", b"\x81\xa3key\xa2\xff\xfe"),
    "split_decision__int_key__malformed": ("split_decision", _raw({1: 2})),
    "split_decision__missing_split__invalid": (
        "split_decision",
        _raw({k: v for k, v in _SPLIT.items() if k != "split"}),
    ),
    "split_decision__split_is_str__invalid": ("split_decision", _raw(_SPLIT | {"split": "7"})),
    "split_decision__split_is_float__invalid": ("split_decision", _raw(_SPLIT | {"split": 7.0})),
    "split_decision__split_negative__invalid": ("split_decision", _raw(_SPLIT | {"split": -1})),
    "split_decision__split_too_big__invalid": ("split_decision", _raw(_SPLIT | {"split": 65536})),
    "split_decision__bad_mode__invalid": ("split_decision", _raw(_SPLIT | {"mode": "sideways"})),
    "split_decision__model_pattern__invalid": ("split_decision", _raw(_SPLIT | {"model": "a/b"})),
    "split_decision__reason_nil__invalid": ("split_decision", _raw(_SPLIT | {"reason": None})),
    "split_decision__predicted_nil__ok": ("split_decision", _raw(_SPLIT | {"predicted_ms": None})),
    "split_decision__unknown_keys__ok": (
        "split_decision",
        _raw(_SPLIT | {"future": {"nested": [1, 2.5, b"x", None]}, "z": True}),
    ),
    "split_decision__too_large__too_large": (
        "split_decision",
        _raw(_SPLIT | {"pad": "x" * 4096}),
    ),
    "split_decision__duplicate_last_wins__ok": ("split_decision", _duplicate_split("x", 13)),
    "split_decision__duplicate_last_bad__invalid": ("split_decision", _duplicate_split(13, "x")),
    "assign__hb_zero__invalid": (
        "assign",
        _raw(VALID["assign"].model_dump() | {"hb_interval_s": 0}),
    ),
    "assign__hb_int__ok": ("assign", _raw(VALID["assign"].model_dump() | {"hb_interval_s": 2})),
    "heartbeat__session_bool__invalid": (
        "heartbeat",
        _raw(VALID["heartbeat"].model_dump() | {"session": True}),
    ),
    # What the instances of a fleet tell each other (topics.md, "Fleet"); devices read past it.
    "service_state__fleet__ok": (
        "service_state",
        _raw(
            VALID["service_state"].model_dump(exclude_none=True)
            | {
                "capacity": 2.5,
                "tier": "cloud",
                "placement": "least-loaded",
                "models": ["fomo96", "mbv2"],
                "draining": True,
            }
        ),
    ),
    "service_state__bad_tier__invalid": (
        "service_state",
        _raw(VALID["service_state"].model_dump(exclude_none=True) | {"tier": "fog"}),
    ),
    "service_state__capacity_zero__invalid": (
        "service_state",
        _raw(VALID["service_state"].model_dump(exclude_none=True) | {"capacity": 0}),
    ),
    "service_stats__load__ok": (
        "service_stats",
        _raw(
            VALID["service_stats"].model_dump(exclude_none=True)
            | {"load": {"queue": 1.5, "served": 7}}
        ),
    ),
    "command__unknown_cmd__invalid": ("command", _raw({"cmd": "reboot", "reason": "x"})),
    "birth__no_models__invalid": (
        "birth",
        _raw(VALID["birth"].model_dump(exclude_none=True) | {"models": []}),
    ),
    "error_report__unknown_code__invalid": (
        "error_report",
        _raw(VALID["error_report"].model_dump(mode="json") | {"code": "nope"}),
    ),
    # Timings: finite, >= 0 and at most TIMING_MAX_MS (1e7 ms); no float is NaN or infinite.
    "infer_request__device_ms_nan__invalid": ("infer_request", _infer({"device_ms": [1.0, _NAN]})),
    "infer_request__device_ms_negative__invalid": (
        "infer_request",
        _infer({"device_ms": [1.0, -0.5]}),
    ),
    "infer_request__device_ms_over_limit__invalid": (
        "infer_request",
        _infer({"device_ms": [1.0, 1.5e7]}),
    ),
    "infer_request__rtt_inf__invalid": ("infer_request", _infer({"rtt_ms": _INF})),
    "infer_request__rtt_over_limit__invalid": ("infer_request", _infer({"rtt_ms": 1e190})),
    "infer_request__rtt_at_limit__ok": ("infer_request", _infer({"rtt_ms": 1e7})),
    "infer_request__scale_nan__invalid": (
        "infer_request",
        _infer({"tensors": [_TENSOR.model_dump() | {"scale": _NAN}]}),
    ),
    "local_timings__device_ms_inf__invalid": (
        "local_timings",
        _raw(VALID["local_timings"].model_dump() | {"device_ms": [1.0, _INF, 0.5]}),
    ),
    "infer_result__queue_nan__invalid": (
        "infer_result",
        _raw(VALID["infer_result"].model_dump() | {"queue_ms": _NAN}),
    ),
    "infer_result__edge_ms_over_limit__invalid": (
        "infer_result",
        _raw(VALID["infer_result"].model_dump() | {"edge_ms": [0.25, 2e7]}),
    ),
    "split_decision__predicted_inf__invalid": (
        "split_decision",
        _raw(_SPLIT | {"predicted_ms": _INF}),
    ),
    "split_decision__predicted_over_limit__invalid": (
        "split_decision",
        _raw(_SPLIT | {"predicted_ms": 1e8}),
    ),
    # Echoes (topics.md, rule 8): padding bounded, the device's clock finite and >= 0.
    "echo__padding_over_limit__invalid": (
        "echo",
        _raw(VALID["echo"].model_dump() | {"padding": bytes(8193)}),
    ),
    "echo__padding_at_limit__ok": (
        "echo",
        _raw(VALID["echo"].model_dump() | {"padding": bytes(8192)}),
    ),
    "echo__too_large__too_large": (
        "echo",
        _raw(VALID["echo"].model_dump() | {"padding": bytes(8192), "pad": "x" * 300}),
    ),
    "echo__sent_ms_negative__invalid": (
        "echo",
        _raw(VALID["echo"].model_dump() | {"sent_ms": -1.0}),
    ),
    "echo__padding_str__invalid": ("echo", _raw(VALID["echo"].model_dump() | {"padding": "zz"})),
    "echo_reply__sent_ms_nan__invalid": (
        "echo_reply",
        _raw(VALID["echo_reply"].model_dump() | {"sent_ms": _NAN}),
    ),
    "service_stats__uptime_inf__invalid": (
        "service_stats",
        _raw(VALID["service_stats"].model_dump(exclude_none=True) | {"uptime_s": _INF}),
    ),
}


def vectors() -> dict[str, bytes]:
    """File name -> payload, everything this script writes."""
    files = {f"{name}__valid__ok.msgpack": msg.encode() for name, msg in VALID.items()}
    files.update({f"{name}.msgpack": payload for name, (_, payload) in BROKEN.items()})
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    wanted = vectors()
    for name, payload in wanted.items():
        path = HERE / name
        if check:
            if not path.is_file() or path.read_bytes() != payload:
                stale.append(name)
        else:
            path.write_bytes(payload)
    extra = {p.name for p in HERE.glob("*.msgpack")} - set(wanted)
    if check and (stale or extra):
        print(
            f"golden vectors out of date: {sorted(stale) + sorted(extra)}; "
            "run python tests/golden/make_golden.py"
        )
        return 1
    for name in extra if not check else ():
        (HERE / name).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
