"""What every payload of the wire contract shares: the base model, its msgpack codec, the
field types and the size and timing limits.

The messages themselves are in `service_messages.py` (the `service/{instance}/...` topics) and
`device_messages.py` (the `dev/{id}/...` topics); topics.md's payload tables are generated
from them (`python -m sciot_mqtt.protocol.docs`), and a test fails when the two disagree.
Every payload is a msgpack map with string keys; receivers ignore keys they do not know, so a
newer sender can add optional fields without breaking older receivers.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.protocol.topics import DEVICE_ID_PATTERN, DeviceTopic, ServiceTopic

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
