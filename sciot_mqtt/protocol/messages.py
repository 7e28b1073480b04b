"""Payload schemas of the wire contract: one pydantic model per topic.

These classes are the single source of truth: topics.md's payload tables are generated from
them (`python -m sciot_mqtt.protocol.docs`), and a test fails when the two disagree.
Every payload is a msgpack map with string keys; receivers ignore keys they do not know, so a
newer sender can add optional fields without breaking older receivers.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Self

import msgpack
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.protocol.topics import (
    DEVICE_ID_PATTERN,
    PROTOCOL_VERSION,
    DeviceTopic,
    ServiceTopic,
)

U32_MAX = 2**32 - 1
U32 = Annotated[int, Field(ge=0, le=U32_MAX)]
ShortText = Annotated[str, Field(max_length=200)]
ModelId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN.pattern, max_length=64)]

CONTROL_MAX_BYTES = 4096
"""Size limit of every control payload (all but tensors), in bytes."""

TIMING_MAX_MS = 1e7
"""Largest duration the contract carries, in ms (about 2.8 hours).

Far beyond any real operator, round trip or queue wait (an operator on the slowest chip takes
seconds, a result is given up after seconds), so no honest sender reaches it; yet small enough
that the cost model's sums over 65,535 operators stay ordinary numbers. Without it one device
could feed its cost model 1e300 and get decisions with 300-digit predictions."""
DurationMs = Annotated[float, Field(ge=0, le=TIMING_MAX_MS)]
"""A measured or predicted duration in ms: finite (as every float), 0 to `TIMING_MAX_MS`."""

_DECODING = {"decoding": True}
"""Validation context of `Message.decode`: what arrives from the wire, never adjusted."""

Publisher = Literal["device", "service", "health"]
Tier = Literal["edge", "cloud"]
"""Where a service instance runs, for the `tiered` placement (topics.md, "Fleet")."""
Placement = Literal["hash", "least-loaded", "tiered"]
"""How a fleet of instances places devices (topics.md, "Fleet")."""
DeviceMode = Literal["offload", "local"]
"""What a device does now (its heartbeat says it): send tensors, or run everything itself."""
SplitMode = Literal["offload", "local", "probe"]
"""What a `split` decision asks for: offload at the split, run locally, or one timed probe."""


class Strict(BaseModel):
    """Strict types, unknown keys ignored (forward compatibility), immutable."""

    # No NaN or infinity in any float: msgpack can carry them, but no field means them, and
    # one would poison every average and comparison it reaches.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)


class Message(Strict):
    """Base of every payload, one subclass per topic."""

    TOPIC: ClassVar[DeviceTopic | ServiceTopic]
    PUBLISHER: ClassVar[Publisher]
    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = False
    MAX_BYTES: ClassVar[int] = CONTROL_MAX_BYTES
    # Whether a device may read it, on a device topic from the service: false for what
    # service instances keep for each other (the access rules follow it).
    DEVICE_READS: ClassVar[bool] = True

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            self.model_dump(mode="python", exclude_none=True), use_bin_type=True
        )
        return packed

    @classmethod
    def decode(cls, payload: bytes, *, max_bytes: int | None = None) -> Self:
        """Parse and validate a payload; any fault raises `ProtocolError` with its code."""
        limit = cls.MAX_BYTES if max_bytes is None else max_bytes
        if len(payload) > limit:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"{cls.TOPIC.value} payload of {len(payload)} B > {limit} B"
            )
        try:
            data = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"{cls.TOPIC.value} payload is not msgpack ({type(exc).__name__})",
            ) from exc
        if not isinstance(data, dict):
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"{cls.TOPIC.value} payload must be a msgpack map, got {type(data).__name__}",
            )
        try:
            return cls.model_validate(data, context=_DECODING)
        except ValidationError as exc:
            raise ProtocolError(ErrorCode.INVALID, _summarize(cls, exc)) from exc


def _summarize(cls: type[Message], exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return f"{cls.TOPIC.value}: " + "; ".join(parts) + more


# --- service -> everyone -------------------------------------------------------------------


class ServiceState(Message):
    """Retained presence of a service instance; its will carries `online: false`."""

    TOPIC = ServiceTopic.STATE
    PUBLISHER = "service"
    RETAIN = True

    online: bool = Field(description="true while the instance serves devices")
    instance: ShortText = Field(description="the instance name, as in the topic")
    started_at: float | None = Field(
        default=None, description="unix time (s) the instance started; absent in the will"
    )
    version: ShortText | None = Field(default=None, description="software version")
    protocol: int = Field(default=PROTOCOL_VERSION, description="protocol version it speaks")
    capacity: float | None = Field(
        default=None, gt=0, le=1e6, description="its weight in the fleet's placement (1 if absent)"
    )
    tier: Tier | None = Field(default=None, description="edge or cloud (edge if absent)")
    placement: Placement | None = Field(
        default=None, description="the placement policy it follows (hash if absent)"
    )
    models: list[ModelId] | None = Field(
        default=None, max_length=64, description="the models it serves, preferred first"
    )
    draining: bool | None = Field(
        default=None,
        description="true while it hands its devices over before stopping; it still serves",
    )


class DeviceCounts(Strict):
    """Devices by presence."""

    online: int = Field(ge=0, description="devices heard from within 3 heartbeat intervals")
    stale: int = Field(ge=0, description="registered devices that missed 3 heartbeats")
    offline: int = Field(ge=0, description="devices whose will fired or past the grace period")


class MessageRates(Strict):
    """Message rates of the service."""

    rx: float = Field(ge=0, description="messages received per second")
    tx: float = Field(ge=0, description="messages published per second")
    errors: float = Field(ge=0, description="rejected messages per second")


class InferenceCounts(Strict):
    """What became of every `infer` received since start."""

    received: int = Field(ge=0, description="`infer` messages received")
    answered: int = Field(ge=0, description="answered with a `result`")
    rejected: int = Field(ge=0, description="answered on `error`")
    duplicates: int = Field(ge=0, description="redeliveries, answered again or dropped")
    lost: int = Field(ge=0, description="results lost with the service's connection")
    running: int = Field(ge=0, description="accepted and still computing")


class InferenceWindow(Strict):
    """Inferences of the last stats interval, as the service sees them."""

    interval_s: float = Field(gt=0, le=86400, description="its length (s)")
    offloaded: int = Field(ge=0, description="results published")
    local: int = Field(ge=0, description="device-only runs reported on `timings`")
    samples: int = Field(ge=0, description="end-to-end latencies measured (see `latency_p50_ms`)")
    latency_p50_ms: DurationMs | None = Field(
        default=None,
        description="median end-to-end latency: the device's part plus its round trip "
        "(offloaded, known with its next request), or its device-only run (local)",
    )
    latency_p99_ms: DurationMs | None = Field(default=None, description="99th percentile of it")
    queue_ms: DurationMs = Field(
        description="the edge queue wait the decisions use now (moving average)"
    )


class ServiceLoad(Strict):
    """How busy an instance is, for the fleet's placement."""

    queue: float = Field(
        ge=0, le=1e9, description="inferences accepted and not answered, mean over the interval"
    )
    served: int = Field(ge=0, description="devices it serves, online now")


class ServiceStats(Message):
    """Published every stats interval."""

    TOPIC = ServiceTopic.STATS
    PUBLISHER = "service"
    QOS = 0

    instance: ShortText = Field(description="the instance name, as in the topic")
    uptime_s: float = Field(ge=0, description="seconds since the instance started")
    devices: DeviceCounts = Field(description="devices known to the registry, by presence")
    rates: MessageRates = Field(description="over the last stats interval")
    rx_total: int = Field(ge=0, description="messages received since start")
    tx_total: int = Field(ge=0, description="messages published since start")
    errors_total: int = Field(ge=0, description="messages rejected since start")
    inference: InferenceCounts | None = Field(
        default=None, description="every `infer` since start: received = the other five summed"
    )
    window: InferenceWindow | None = Field(
        default=None, description="inferences and their latency over the last stats interval"
    )
    load: ServiceLoad | None = Field(default=None, description="its load, for the fleet")


class Ping(Message):
    """A health check asks an instance whether it hears: it is answered on `pong` only
    through the service's own subscriptions, so a service that still publishes `stats` but
    lost its subscriptions (a deaf service) does not answer. The service pings itself too."""

    TOPIC = ServiceTopic.PING
    PUBLISHER = "health"

    nonce: ShortText = Field(description="any text; the answer repeats it")


class Pong(Message):
    """The answer to a `ping`, from the instance that heard it."""

    TOPIC = ServiceTopic.PONG
    PUBLISHER = "service"

    nonce: ShortText = Field(description="the ping's nonce")
    instance: ShortText = Field(description="the instance name, as in the topic")


# --- device -> service ---------------------------------------------------------------------


class Birth(Message):
    """Registration, sent after `state` online on every (re)connect and on `rebirth`."""

    TOPIC = DeviceTopic.BIRTH
    PUBLISHER = "device"

    protocol: int = Field(description="protocol version the device speaks (3)")
    session: U32 = Field(description="session counter of this connection, also in its will")
    kind: ShortText = Field(description='device kind, e.g. "python", "esp32s3"')
    models: list[ModelId] = Field(
        min_length=1, max_length=16, description="ids of the models the device carries"
    )
    max_payload: int = Field(
        ge=256, le=2**28, description="largest payload (bytes) the device accepts"
    )
    fw: ShortText | None = Field(default=None, description="firmware / software version")


class DeviceState(Message):
    """Retained presence of a device; its will is the same message with `online: false`."""

    TOPIC = DeviceTopic.STATE
    PUBLISHER = "device"
    RETAIN = True

    online: bool = Field(description="false in the will and when leaving cleanly")
    session: U32 = Field(description="session counter of the connection it describes")


class Heartbeat(Message):
    """Liveness, every `hb_interval_s` of the assignment; also says what the device does."""

    TOPIC = DeviceTopic.HB
    PUBLISHER = "device"
    QOS = 0

    seq: U32 = Field(description="increments by one per heartbeat, wraps at 2^32")
    session: U32 = Field(description="session of the current connection")
    mode: DeviceMode = Field(description="what the device does now: offload or local")


Dtype = Literal["int8", "uint8", "int16", "int32", "float32"]
TENSOR_MAX_BYTES = 2**24


class Tensor(Strict):
    """A tensor on the wire: raw bytes in C order plus what is needed to read them."""

    index: int = Field(ge=0, le=2**31 - 1, description="tensor index in the model's manifest")
    dtype: Dtype = Field(description="element type of `data`")
    shape: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        min_length=1, max_length=8, description="dimensions, batch first"
    )
    scale: float = Field(description="quantization scale (0 when not quantized)")
    zero_point: int = Field(description="quantization zero point")
    data: Annotated[bytes, Field(max_length=TENSOR_MAX_BYTES)] = Field(
        description="elements in C order, little-endian"
    )


class InferRequest(Message):
    """The device ran operators [0, split) and sends the tensors live at that boundary."""

    TOPIC = DeviceTopic.INFER
    PUBLISHER = "device"
    MAX_BYTES = TENSOR_MAX_BYTES  # the service applies its own, lower, max_payload

    seq: U32 = Field(description="inference sequence number, increasing, wraps at 2^32")
    session: U32 = Field(description="session of the current connection")
    model: ModelId = Field(description="the assigned model")
    split: int = Field(ge=0, le=65535, description="operators the device ran: [0, split)")
    decision: U32 | None = Field(
        default=None, description="the `split` decision it followed; absent when pinned"
    )
    tensors: list[Tensor] = Field(
        min_length=1, max_length=16, description="live tensors at `split`, in manifest order"
    )
    device_ms: list[DurationMs] = Field(
        max_length=65535, description="time of each operator [0, split) on the device (ms)"
    )
    rtt_ms: DurationMs | None = Field(
        default=None, description="round trip the device measured for `rtt_seq` (ms)"
    )
    rtt_seq: U32 | None = Field(
        default=None, description="the inference (or the echo) `rtt_ms` belongs to"
    )


class LocalTimings(Message):
    """A device-only run: every operator's time (the device keeps its result)."""

    TOPIC = DeviceTopic.TIMINGS
    PUBLISHER = "device"
    MAX_BYTES = 65536

    seq: U32
    session: U32
    model: ModelId
    reason: Literal["local", "probe", "pinned"] = Field(
        description="why it ran locally: no service, asked to probe, or split pinned to N"
    )
    device_ms: list[DurationMs] = Field(
        max_length=65535, description="time of each operator [0, N) on the device (ms)"
    )
    rtt_ms: DurationMs | None = Field(
        default=None, description="as in `infer`: a round trip not yet reported"
    )
    rtt_seq: U32 | None = Field(
        default=None, description="the inference (or the echo) `rtt_ms` belongs to"
    )


ECHO_PADDING_MAX = 8192
"""Largest `padding` of an `echo` (bytes): room to tell bandwidth from latency on a slow link
(8 KiB take 130 ms at 0.5 Mbit/s), small next to a tensor; what devices send is far less
(`linkcheck.py`)."""


class Echo(Message):
    """A link check no inference waits for, sent beside a local run (topics.md, rule 8).

    The service answers it at once on `echo_reply`; its round trip goes up as `rtt_ms`, with
    `rtt_seq` = its `seq`, in the device's next `infer` or `timings`."""

    TOPIC = DeviceTopic.ECHO
    PUBLISHER = "device"
    QOS = 0
    MAX_BYTES = ECHO_PADDING_MAX + 256

    seq: U32 = Field(description="the `seq` of the local inference it was sent beside")
    session: U32 = Field(description="session of the current connection")
    sent_ms: float = Field(
        ge=0, le=1e15, description="the device's clock when sent (ms, any origin); echoed back"
    )
    padding: Annotated[bytes, Field(max_length=ECHO_PADDING_MAX)] = Field(
        description="zeros, sized to what the link estimate needs (topics.md, rule 8)"
    )


# --- service -> device ---------------------------------------------------------------------


class InferResult(Message):
    """The service ran operators [split, N) and returns the result."""

    TOPIC = DeviceTopic.RESULT
    PUBLISHER = "service"
    MAX_BYTES = TENSOR_MAX_BYTES

    seq: U32 = Field(description="the request's `seq`")
    model: ModelId
    split: int = Field(ge=0, le=65535, description="the request's `split`")
    output: Tensor = Field(description="the raw model output")
    edge_ms: list[DurationMs] = Field(
        max_length=65535, description="time of each operator [split, N) at the edge (ms)"
    )
    queue_ms: DurationMs = Field(description="time the request waited for a worker (ms)")
    service_ms: DurationMs = Field(description="receive to publish, in the service (ms)")


class Assign(Message):
    """The model a device runs and the rules it follows; retained so a reconnect knows it."""

    TOPIC = DeviceTopic.ASSIGN
    PUBLISHER = "service"
    RETAIN = True

    model: ModelId = Field(description="one of the models the device announced")
    session: U32 = Field(description="the birth session this answers")
    hb_interval_s: float = Field(gt=0, le=3600, description="heartbeat interval (s)")
    max_payload: int = Field(ge=256, description="largest payload (bytes) the service accepts")
    instance: ShortText = Field(
        description="the instance serving the device: `infer`, `timings` and `echo` go to it"
    )


class SplitDecision(Message):
    """Where the device cuts the model; retained, published only when it changes."""

    TOPIC = DeviceTopic.SPLIT
    PUBLISHER = "service"
    RETAIN = True

    decision: U32 = Field(description="decision sequence number, increasing per device")
    model: ModelId = Field(description="the model the decision is for")
    split: int = Field(ge=0, le=65535, description="operators run on the device: [0, split)")
    mode: SplitMode = Field(
        description="offload: send at `split`; local: run everything; probe: a timed local run"
    )
    reason: ShortText = Field(description="why, in a few words")
    predicted_ms: DurationMs | None = Field(
        default=None, description="predicted latency (ms); a longer prediction is sent as the limit"
    )

    @field_validator("predicted_ms", mode="before")
    @classmethod
    def _saturate_prediction(cls, value: Any, info: ValidationInfo) -> Any:
        """A prediction is a sum over operators and a fitted link: in-range inputs can still
        add up past `TIMING_MAX_MS`. The sender says "at least the limit" rather than fail;
        a receiver (`decode`) still rejects anything out of range."""
        decoding = info.context is not None and info.context.get("decoding", False)
        if not decoding and isinstance(value, float) and math.isfinite(value):
            return min(value, TIMING_MAX_MS)
        return value


class Command(Message):
    """An instruction to one device."""

    TOPIC = DeviceTopic.CMD
    PUBLISHER = "service"

    cmd: Literal["rebirth"] = Field(description="rebirth: publish state and birth again")
    reason: ShortText = Field(description="why, for the device's log")


class ErrorReport(Message):
    """Why a message from this device was rejected."""

    TOPIC = DeviceTopic.ERROR
    PUBLISHER = "service"

    # Enums arrive as plain strings on the wire, so this one field is validated by value.
    code: ErrorCode = Field(strict=False, description="reason code (topics.md, Error codes)")
    reason: Annotated[str, Field(max_length=500)] = Field(description="human-readable detail")
    topic: ShortText = Field(description="last level of the rejected message's topic")
    seq: int | None = Field(default=None, description="its sequence number, when it had one")


class EchoReply(Message):
    """The answer to an `echo`, published as soon as it arrives (within the reply budget)."""

    TOPIC = DeviceTopic.ECHO_REPLY
    PUBLISHER = "service"
    QOS = 0

    seq: U32 = Field(description="the echo's `seq`")
    sent_ms: float = Field(ge=0, le=1e15, description="the echo's `sent_ms`, as received")
