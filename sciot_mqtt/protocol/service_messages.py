"""Payload schemas of the `service/{instance}/...` topics: what a service instance says of
itself (presence, stats, load) and the health check's ping and pong.

One pydantic model per topic, on the base of `codec.py`; these classes and those of
`device_messages.py` are the single source of truth of the payloads (topics.md's tables are
generated from them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sciot_mqtt.protocol.codec import DurationMs, Message, ModelId, ShortText, Strict
from sciot_mqtt.protocol.topics import PROTOCOL_VERSION, ServiceTopic

Tier = Literal["edge", "cloud"]
"""Where a service instance runs, for the `tiered` placement (topics.md, "Fleet")."""
Placement = Literal["hash", "least-loaded", "tiered"]
"""How a fleet of instances places devices (topics.md, "Fleet")."""


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
