"""Topic names of the wire contract (topics.md, "Topics")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PROTOCOL_VERSION = 3
NAMESPACE = "sciot/v1"
DEVICE_ID_MAX_LEN = 64
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class DeviceTopic(StrEnum):
    """The last level of `sciot/v1/dev/{id}/...`."""

    BIRTH = "birth"
    STATE = "state"
    HB = "hb"
    INFER = "infer"
    TIMINGS = "timings"
    ECHO = "echo"
    ASSIGN = "assign"
    SPLIT = "split"
    RESULT = "result"
    CMD = "cmd"
    ERROR = "error"
    ECHO_REPLY = "echo_reply"
    EXPLAIN = "explain"
    SNAPSHOT = "snapshot"


ADDRESSED = frozenset({DeviceTopic.INFER, DeviceTopic.TIMINGS, DeviceTopic.ECHO})
"""Device topics addressed to one service instance: `sciot/v1/dev/{id}/{kind}/{instance}`,
the instance named by the device's `assign`, so each payload reaches the one instance that
serves the device (topics.md, "Fleet")."""


class ServiceTopic(StrEnum):
    """The last level of `sciot/v1/service/{instance}/...`."""

    STATE = "state"
    STATS = "stats"
    PING = "ping"
    PONG = "pong"


def is_valid_device_id(device_id: str) -> bool:
    """A device id is one safe topic level: letters, digits, `_ . -`, at most 64 characters."""
    return DEVICE_ID_PATTERN.fullmatch(device_id) is not None


def device_topic(device_id: str, kind: DeviceTopic, instance: str | None = None) -> str:
    """The topic of `kind` for a device; an addressed kind (`ADDRESSED`) names the instance."""
    base = f"{NAMESPACE}/dev/{device_id}/{kind.value}"
    if kind in ADDRESSED:
        if instance is None:
            raise ValueError(f"{kind.value} is addressed to a service instance: name it")
        return f"{base}/{instance}"
    if instance is not None:
        raise ValueError(f"{kind.value} is not addressed to a service instance")
    return base


def service_topic(instance: str, kind: ServiceTopic) -> str:
    return f"{NAMESPACE}/service/{instance}/{kind.value}"


def device_filter(kind: DeviceTopic, instance: str | None = None) -> str:
    """Subscription filter for one kind of message from every device; for an addressed kind,
    the messages to `instance` (`+`: to every instance)."""
    if kind in ADDRESSED:
        return f"{NAMESPACE}/dev/+/{kind.value}/{instance or '+'}"
    return f"{NAMESPACE}/dev/+/{kind.value}"


def service_filter(kind: ServiceTopic) -> str:
    return f"{NAMESPACE}/service/+/{kind.value}"


@dataclass(frozen=True, slots=True)
class DeviceAddress:
    """A topic below `sciot/v1/dev/`, split into its device id and kind."""

    device_id: str
    kind: DeviceTopic
    instance: str | None = None  # the instance an addressed kind is sent to


@dataclass(frozen=True, slots=True)
class ServiceAddress:
    instance: str
    kind: ServiceTopic


def parse_topic(topic: str) -> DeviceAddress | ServiceAddress | None:
    """Split a topic of the contract; None for anything outside it.

    The device id is returned as it stands, valid or not: the caller decides how to answer an
    invalid one (it still names a topic we can log and reply on).
    """
    parts = topic.split("/")
    if len(parts) not in (5, 6) or f"{parts[0]}/{parts[1]}" != NAMESPACE:
        return None
    scope, ident, last = parts[2], parts[3], parts[4]
    try:
        if scope == "dev":
            kind = DeviceTopic(last)
            if (kind in ADDRESSED) != (len(parts) == 6):
                return None
            return DeviceAddress(ident, kind, parts[5] if len(parts) == 6 else None)
        if len(parts) != 5:
            return None
        if scope == "service":
            return ServiceAddress(ident, ServiceTopic(last))
    except ValueError:
        return None
    return None
