"""Payload schemas of the `dev/{id}/...` topics: what a device and the service instance
serving it say to each other.

One pydantic model per topic, on the base of `codec.py`; these classes and those of
`service_messages.py` are the single source of truth of the payloads (topics.md's tables are
generated from them).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from sciot_mqtt.errors import ErrorCode
from sciot_mqtt.protocol.codec import (
    TIMING_MAX_MS,
    U32,
    DurationMs,
    Message,
    ModelId,
    ShortText,
    Strict,
)
from sciot_mqtt.protocol.topics import DeviceTopic

DeviceMode = Literal["offload", "local"]
"""What a device does now (its heartbeat says it): send tensors, or run everything itself."""
SplitMode = Literal["offload", "local", "probe"]
"""What a `split` decision asks for: offload at the split, run locally, or one timed probe."""


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
