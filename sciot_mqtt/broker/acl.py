"""Who may publish and read which topic, derived from the wire contract (sciot_mqtt.protocol).

One set of rules, two enforcers: Mosquitto reads the ACL file rendered here
(`mosquitto/acl`, `pattern` lines with `%u` = the username = the device id), and the embedded
amqtt broker asks `allowed()` (sciot_mqtt/broker/amqtt_plugins.py).

    python -m sciot_mqtt.broker.acl --write mosquitto/acl   # regenerate
    python -m sciot_mqtt.broker.acl --check mosquitto/acl   # exit 1 if out of date
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sciot_mqtt.creds.passwd import SERVICE_ACCOUNT
from sciot_mqtt.protocol.messages import ALL_MESSAGES
from sciot_mqtt.protocol.topics import NAMESPACE, DeviceTopic, ServiceTopic

USERNAME = "%u"  # Mosquitto's substitution; `allowed()` substitutes the same way
# Devices follow the service's online state (topics.md); its stats are for operators.
DEVICE_READABLE_SERVICE_TOPICS = (ServiceTopic.STATE,)
# The container health check logs in as the service and reads this retained $SYS topic.
HEALTH_TOPIC = "$SYS/broker/uptime"


class Access(StrEnum):
    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"

    def allows(self, action: Access) -> bool:
        return self is Access.READWRITE or self is action


@dataclass(frozen=True, slots=True)
class Rule:
    """`access` to `topic` (an MQTT filter) for the service account, or for every device
    (then `topic` holds `%u` where the device's own id goes)."""

    account: str  # SERVICE_ACCOUNT, or "device"
    access: Access
    topic: str
    why: str


def rules() -> list[Rule]:
    """The rules, from each message's topic and publisher."""
    out: list[Rule] = []
    for message in ALL_MESSAGES:
        topic = message.TOPIC
        if isinstance(topic, DeviceTopic):
            own = f"{NAMESPACE}/dev/{USERNAME}/{topic.value}"
            every = f"{NAMESPACE}/dev/+/{topic.value}"
            if message.PUBLISHER == "device":
                out.append(Rule("device", Access.WRITE, own, f"{message.__name__}, as itself"))
                out.append(Rule(SERVICE_ACCOUNT, Access.READ, every, message.__name__))
            else:
                out.append(Rule("device", Access.READ, own, f"{message.__name__}, its own"))
                # Read too: the service rebuilds its decisions from its own retained messages.
                out.append(Rule(SERVICE_ACCOUNT, Access.READWRITE, every, message.__name__))
        else:
            every = f"{NAMESPACE}/service/+/{topic.value}"
            out.append(Rule(SERVICE_ACCOUNT, Access.READWRITE, every, message.__name__))
            if topic in DEVICE_READABLE_SERVICE_TOPICS:
                out.append(Rule("device", Access.READ, every, message.__name__))
    out.append(Rule(SERVICE_ACCOUNT, Access.READ, HEALTH_TOPIC, "container health check"))
    return out


# --- matching (for the embedded broker) ----------------------------------------------------


def _levels(pattern: str, username: str) -> list[str]:
    return [username if level == USERNAME else level for level in pattern.split("/")]


def topic_matches(pattern: list[str], topic: list[str]) -> bool:
    """An MQTT filter `pattern` matches the concrete `topic` (both split into levels)."""
    for index, level in enumerate(pattern):
        if level == "#":
            return True
        if index >= len(topic) or (level != "+" and level != topic[index]):
            return False
    return len(pattern) == len(topic)


def filter_covered(pattern: list[str], subscription: list[str]) -> bool:
    """Every topic the filter `subscription` can match is matched by `pattern`."""
    for index, level in enumerate(pattern):
        if level == "#":
            return True
        if index >= len(subscription):
            return False
        wanted = subscription[index]
        if wanted == "#" or (level != "+" and (wanted == "+" or level != wanted)):
            return False
    return len(pattern) == len(subscription)


def allowed(username: str, topic: str, action: Access, *, subscription: bool = False) -> bool:
    """May `username` do `action` (READ or WRITE) on `topic`?

    A subscription is allowed only if one rule covers everything it can match: a broker
    sends retained messages on subscribing, so filtering each delivery later is not enough.
    """
    account = SERVICE_ACCOUNT if username == SERVICE_ACCOUNT else "device"
    wanted = topic.split("/")
    check = filter_covered if subscription else topic_matches
    for rule in rules_for(account):
        if rule.access.allows(action) and check(_levels(rule.topic, username), wanted):
            return True
    return False


@functools.cache
def rules_for(account: str) -> tuple[Rule, ...]:
    """The rules of the service account, or of every device (`"device"`)."""
    return tuple(rule for rule in rules() if rule.account == account)


# --- the Mosquitto ACL file ----------------------------------------------------------------


def render_mosquitto_acl() -> str:
    lines = [
        "# Mosquitto ACL for sciot-mqtt. GENERATED from sciot_mqtt/protocol: do not edit;",
        "# regenerate with `python -m sciot_mqtt.broker.acl --write mosquitto/acl`.",
        "#",
        "# Every account but the service is a device whose username is its device id (%u).",
        "# Anything not listed is denied; a denied publish is dropped by the broker.",
        "",
        "# Devices: publish as themselves, read what the service tells them.",
    ]
    for rule in rules_for("device"):
        lines.append(f"pattern {rule.access.value} {rule.topic}")
    lines += ["", f"# The service account ({SERVICE_ACCOUNT}).", f"user {SERVICE_ACCOUNT}"]
    for rule in rules_for(SERVICE_ACCOUNT):
        lines.append(f"topic {rule.access.value} {rule.topic}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="FILE", help="write the ACL file")
    mode.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE is stale")
    args = parser.parse_args(argv)
    text = render_mosquitto_acl()
    if args.write is not None:
        args.write.write_text(text)
        return 0
    current = args.check.read_text() if args.check.exists() else ""
    if current != text:
        print(
            f"{args.check} is out of date: "
            f"run python -m sciot_mqtt.broker.acl --write {args.check}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
