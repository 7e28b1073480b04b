"""Every message of the contract, in the order topics.md and the C header list them."""

from __future__ import annotations

from sciot_mqtt.protocol.codec import Message
from sciot_mqtt.protocol.device_messages import (
    Assign,
    Birth,
    Command,
    DeviceState,
    Echo,
    EchoReply,
    ErrorReport,
    Heartbeat,
    InferRequest,
    InferResult,
    LocalTimings,
    SplitDecision,
)
from sciot_mqtt.protocol.insight import DeviceSnapshot, SplitExplanation
from sciot_mqtt.protocol.service_messages import (
    Ping,
    Pong,
    ServiceState,
    ServiceStats,
)

ALL_MESSAGES: tuple[type[Message], ...] = (
    ServiceState,
    ServiceStats,
    Ping,
    Pong,
    Birth,
    DeviceState,
    Heartbeat,
    InferRequest,
    LocalTimings,
    Echo,
    Assign,
    SplitDecision,
    InferResult,
    Command,
    ErrorReport,
    EchoReply,
    SplitExplanation,
    DeviceSnapshot,
)
