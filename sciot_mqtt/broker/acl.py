"""Who may publish and read which topic, derived from the wire contract (sciot_mqtt.protocol).

One set of rules, two enforcers: Mosquitto reads the ACL file rendered here
(`mosquitto/acl`: `pattern` lines with `%u` = the username = the device id, and `user` blocks
for each service instance's accounts), and the embedded amqtt broker asks `allowed()`
(sciot_mqtt/broker/amqtt_plugins.py), which knows an account's role from its name
(`sciot_mqtt.protocol.accounts`).

    python -m sciot_mqtt.broker.acl --write mosquitto/acl   # regenerate (instance edge)
    python -m sciot_mqtt.broker.acl --write mosquitto/acl --instance a --instance b
    python -m sciot_mqtt.broker.acl --check mosquitto/acl   # exit 1 if out of date
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sciot_mqtt.protocol.accounts import (
    Role,
    dashboard_client_id,
    health_client_id,
    parse_account,
    service_client_id,
)
from sciot_mqtt.protocol.catalog import ALL_MESSAGES
from sciot_mqtt.protocol.topics import ADDRESSED, NAMESPACE, DeviceTopic, ServiceTopic

USERNAME = "%u"  # Mosquitto's substitution: a device's own id; `allowed()` substitutes the same
INSTANCE = "{instance}"  # a service instance's own name, written out per account in the file
# Devices follow the service's online state (topics.md); its stats are for operators.
DEVICE_READABLE_SERVICE_TOPICS = (ServiceTopic.STATE,)
# The instances of a fleet follow each other's presence and load (topics.md, "Fleet").
SERVICE_READABLE_SERVICE_TOPICS = (ServiceTopic.STATE, ServiceTopic.STATS)
# What `sciot-mqtt health` reads to see its instance alive and hearing.
HEALTH_READABLE_SERVICE_TOPICS = (ServiceTopic.STATE, ServiceTopic.STATS, ServiceTopic.PONG)
# What a dashboard reads, of every instance and device; it never publishes.
DASHBOARD_READABLE_SERVICE_TOPICS = (ServiceTopic.STATE, ServiceTopic.STATS)
DASHBOARD_READABLE_DEVICE_TOPICS = (DeviceTopic.EXPLAIN,)
# The instances the committed mosquitto/acl has accounts for (the default `--instance`).
DEFAULT_INSTANCES = ("edge",)


class Access(StrEnum):
    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"

    def allows(self, action: Access) -> bool:
        return self is Access.READWRITE or self is action


@dataclass(frozen=True, slots=True)
class Rule:
    """`access` to `topic` (an MQTT filter) for every account of a role. `topic` may hold
    `%u` (a device's own id) or `{instance}` (a service or health account's instance)."""

    role: Role
    access: Access
    topic: str
    why: str


def rules() -> list[Rule]:
    """The rules, from each message's topic and publisher."""
    out: list[Rule] = []
    for message in ALL_MESSAGES:
        topic = message.TOPIC
        name = message.__name__
        if isinstance(topic, DeviceTopic):
            own = f"{NAMESPACE}/dev/{USERNAME}/{topic.value}"
            every = f"{NAMESPACE}/dev/+/{topic.value}"
            if topic in ADDRESSED:
                # A device may address any instance; an instance reads only what is sent to it.
                out.append(Rule(Role.DEVICE, Access.WRITE, f"{own}/+", f"{name}, as itself"))
                out.append(Rule(Role.SERVICE, Access.READ, f"{every}/{INSTANCE}", f"{name}, to it"))
            elif message.PUBLISHER == "device":
                out.append(Rule(Role.DEVICE, Access.WRITE, own, f"{name}, as itself"))
                out.append(Rule(Role.SERVICE, Access.READ, every, name))
            else:
                if message.DEVICE_READS:
                    out.append(Rule(Role.DEVICE, Access.READ, own, f"{name}, its own"))
                # Read too: the instances rebuild their decisions from the retained messages
                # and follow each other's (topics.md, "Fleet").
                out.append(Rule(Role.SERVICE, Access.READWRITE, every, name))
            if topic in DASHBOARD_READABLE_DEVICE_TOPICS:
                out.append(Rule(Role.DASHBOARD, Access.READ, every, f"{name} of every device"))
        else:
            mine = f"{NAMESPACE}/service/{INSTANCE}/{topic.value}"
            every = f"{NAMESPACE}/service/+/{topic.value}"
            # Each instance speaks only for itself: one cannot fake another's state.
            out.append(Rule(Role.SERVICE, Access.READWRITE, mine, f"{name}, its own"))
            if topic in DEVICE_READABLE_SERVICE_TOPICS:
                out.append(Rule(Role.DEVICE, Access.READ, every, name))
            if topic in SERVICE_READABLE_SERVICE_TOPICS:
                out.append(Rule(Role.SERVICE, Access.READ, every, f"{name} of every instance"))
            if topic in HEALTH_READABLE_SERVICE_TOPICS:
                out.append(Rule(Role.HEALTH, Access.READ, mine, f"{name}, its instance's"))
            if topic in DASHBOARD_READABLE_SERVICE_TOPICS:
                out.append(Rule(Role.DASHBOARD, Access.READ, every, f"{name} of every instance"))
            if message.PUBLISHER == "health":
                out.append(Rule(Role.HEALTH, Access.WRITE, mine, f"{name}, to its instance"))
    return out


# --- matching (for the embedded broker) ----------------------------------------------------


def _levels(pattern: str, scope: str) -> list[str]:
    return [scope if level in (USERNAME, INSTANCE) else level for level in pattern.split("/")]


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
    A name that is no account of the contract (`protocol.accounts`) may do nothing.
    """
    account = parse_account(username)
    if account is None:
        return False
    wanted = topic.split("/")
    check = filter_covered if subscription else topic_matches
    for rule in rules_for(account.role):
        if rule.access.allows(action) and check(_levels(rule.topic, account.scope), wanted):
            return True
    return False


@functools.cache
def rules_for(role: Role) -> tuple[Rule, ...]:
    """The rules of every account of `role`."""
    return tuple(rule for rule in rules() if rule.role is role)


# --- the Mosquitto ACL file ----------------------------------------------------------------


def render_mosquitto_acl(instances: Iterable[str] = DEFAULT_INSTANCES) -> str:
    """The ACL file, with a service and a health account for each of `instances`.

    Mosquitto's ACL names a user only literally, so every service instance needs its own
    `user` blocks; devices share the `pattern` lines.
    """
    lines = [
        "# Mosquitto ACL for sciot-mqtt. GENERATED from sciot_mqtt/protocol: do not edit;",
        "# regenerate with `python -m sciot_mqtt.broker.acl --write mosquitto/acl`",
        "# (add `--instance NAME` once per service instance; this file: "
        + ", ".join(instances)
        + ").",
        "#",
        "# Every account is a device whose username is its device id (%u), except the service",
        "# instances (sciot-service-NAME), their health checks (sciot-health-NAME) and the",
        "# dashboards beside them (sciot-dashboard-NAME, read-only) below.",
        "# Anything not listed is denied; a denied publish is dropped by the broker.",
        "",
        "# Devices: publish as themselves, read what the service tells them.",
    ]
    for rule in rules_for(Role.DEVICE):
        lines.append(f"pattern {rule.access.value} {rule.topic}")
    for instance in instances:
        for role, account in (
            (Role.SERVICE, service_client_id(instance)),
            (Role.HEALTH, health_client_id(instance)),
            (Role.DASHBOARD, dashboard_client_id(instance)),
        ):
            lines += ["", f"# The {role.value} account of instance {instance}.", f"user {account}"]
            for rule in rules_for(role):
                topic = rule.topic.replace(INSTANCE, instance)
                lines.append(f"topic {rule.access.value} {topic}")
    return "\n".join(lines) + "\n"


def _instances(value: str) -> str:
    if parse_account(service_client_id(value)) is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid instance name")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="FILE", help="write the ACL file")
    mode.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE is stale")
    parser.add_argument(
        "--instance",
        dest="instances",
        action="append",
        type=_instances,
        metavar="NAME",
        help="a service instance to give accounts to; repeat for each (default: edge)",
    )
    args = parser.parse_args(argv)
    text = render_mosquitto_acl(args.instances or DEFAULT_INSTANCES)
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
