"""What the service publishes about a device for others than the device: the explanation of
its split for dashboards (`explain`), and the snapshot of what was learnt for the next
instance that serves it (`snapshot`). Devices never read these.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from sciot_mqtt.protocol.codec import (
    U32,
    DurationMs,
    Message,
    ModelId,
    ShortText,
    Strict,
)
from sciot_mqtt.protocol.device_messages import SplitMode
from sciot_mqtt.protocol.topics import DeviceTopic

PresenceName = Literal["online", "stale", "offline"]


class DecisionRecord(Strict):
    """One `split` decision, as published, and when."""

    decision: U32 = Field(description="its decision number")
    split: int = Field(ge=0, le=65535, description="operators run on the device: [0, split)")
    mode: SplitMode = Field(description="as in `split`")
    reason: ShortText = Field(description="as in `split`")
    predicted_ms: DurationMs | None = Field(default=None, description="as in `split`")
    at: float | None = Field(
        default=None,
        ge=0,
        description="unix time (s) it was made, on the service's clock; absent for a decision "
        "recovered from the retained `split` after a restart",
    )


class PredictedLatency(Strict):
    """The predicted latency T(s) of every split point s = 0..N, in parts (ms).

    Item s of each list is split point s; T(s) is the sum of the four parts at s."""

    device_ms: list[DurationMs] = Field(
        max_length=65536, description="operators [0, s) on the device"
    )
    link_ms: list[DurationMs] = Field(
        max_length=65536, description="link latency + bytes(s) / bandwidth; 0 at N"
    )
    queue_ms: list[DurationMs] = Field(
        max_length=65536, description="waiting for an edge worker; 0 at N"
    )
    edge_ms: list[DurationMs] = Field(
        max_length=65536, description="operators [s, N) at the edge; 0 at N"
    )
    bytes: list[Annotated[int, Field(ge=0)]] = Field(
        max_length=65536, description="bytes sent at s (the raw input at 0)"
    )

    @model_validator(mode="after")
    def _same_lengths(self) -> Self:
        lengths = {len(self.device_ms), len(self.link_ms), len(self.queue_ms)}
        lengths |= {len(self.edge_ms), len(self.bytes)}
        if len(lengths) != 1:
            raise ValueError("every list has one item per split point")
        return self


class LinkFit(Strict):
    """The device's link as the service fitted it: time = latency + bytes / bandwidth."""

    latency_ms: DurationMs = Field(description="fitted latency (ms)")
    kbps: float | None = Field(
        default=None, ge=0, description="fitted bandwidth (kbit/s); absent when unbounded"
    )
    samples: int = Field(ge=0, description="round trips fitted so far (0: still the prior guess)")


class MeasuredLatency(Strict):
    """One inference of the device as the service measured it."""

    split: int = Field(ge=0, le=65535, description="where it was cut")
    total_ms: DurationMs = Field(description="end to end: device part + round trip, or the run")
    device_ms: DurationMs = Field(description="operators [0, split) on the device")
    link_ms: DurationMs | None = Field(
        default=None, description="offloaded: the round trip minus the service's own time"
    )
    service_ms: DurationMs | None = Field(
        default=None, description="offloaded: receive to publish in the service (queue + edge)"
    )


class SplitExplanation(Message):
    """Why a device is cut where it is: the service's view of it, for dashboards.

    Retained; published when a decision is made or the device's presence changes, and at most
    every `explain_interval` when only predictions or measurements moved (never per
    inference). Devices and the firmware ignore it."""

    TOPIC = DeviceTopic.EXPLAIN
    PUBLISHER = "service"
    QOS = 0
    RETAIN = True
    MAX_BYTES = 65536

    instance: ShortText = Field(description="the service instance that explains it")
    at: float = Field(ge=0, description="unix time (s) of this explanation")
    presence: PresenceName = Field(description="online, stale or offline, as the service sees it")
    kind: ShortText | None = Field(default=None, description="device kind from its birth")
    model: ModelId = Field(description="its assigned model")
    ops: int = Field(
        ge=0, le=65535, description="operators of the model (N): split N = device only"
    )
    decision: DecisionRecord | None = Field(default=None, description="the decision in force")
    history: list[DecisionRecord] = Field(
        default_factory=list, max_length=32, description="earlier decisions, newest first"
    )
    predicted: PredictedLatency | None = Field(
        default=None, description="T(s) of every split point; absent until device times are known"
    )
    link: LinkFit | None = Field(default=None, description="the link fit the prediction uses")
    measured: list[MeasuredLatency] = Field(
        default_factory=list, max_length=64, description="recent inferences, oldest first"
    )


# --- service -> service ---------------------------------------------------------------------


class DeviceSnapshot(Message):
    """What the serving instance learnt of a device: its successor starts from it.

    Retained; published when it changes materially, not per inference. Only service
    instances read it (topics.md, "Fleet")."""

    TOPIC = DeviceTopic.SNAPSHOT
    PUBLISHER = "service"
    RETAIN = True
    MAX_BYTES = 65536
    DEVICE_READS = False

    instance: ShortText = Field(description="the instance that learnt it")
    session: U32 = Field(description="the device's birth session when it was taken")
    kind: ShortText = Field(description="the device kind of that birth (a new kind starts over)")
    model: ModelId = Field(description="the model the times are for")
    device_ms: list[DurationMs] | None = Field(
        default=None,
        max_length=65535,
        description="moving average of each operator's time on the device (ms); absent "
        "until every operator was timed",
    )
    link_ms: DurationMs = Field(description="fitted link latency (ms)")
    link_ms_per_byte: float = Field(ge=0, le=1e3, description="fitted link cost per byte (ms)")
    link_samples: int = Field(ge=0, description="round trips the link fit has seen")
