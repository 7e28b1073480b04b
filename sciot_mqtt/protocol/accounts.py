"""Who connects: broker accounts and MQTT client ids (topics.md, "Clients and accounts").

A client's MQTT client id is the name of its account, so a broker can tie the two together
and no login can take over another's session (Mosquitto: `use_username_as_clientid`; the
embedded broker refuses any other id). The names:

| client | account = client id |
|---|---|
| device `{id}` | `{id}` |
| service instance `{instance}` | `sciot-service-{instance}` |
| health check of instance `{instance}` | `sciot-health-{instance}` |
| dashboard of `up --instance {instance} --dashboard` | `sciot-dashboard-{instance}` |

One account per service instance lets several instances share a broker without taking each
other's sessions; the health check has its own so that it never takes the service's. The
dashboard's account reads every instance and device (never writes); it is named after the
`up` process that serves it, so two such processes never take turns with one session.
Account names starting with `sciot-` are reserved for these roles: no device account may
use the prefix. On a broker without logins the same client ids are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sciot_mqtt.protocol.topics import is_valid_device_id

RESERVED_PREFIX = "sciot-"
SERVICE_PREFIX = "sciot-service-"
HEALTH_PREFIX = "sciot-health-"
DASHBOARD_PREFIX = "sciot-dashboard-"


class Role(StrEnum):
    DEVICE = "device"
    SERVICE = "service"
    HEALTH = "health"
    DASHBOARD = "dashboard"


@dataclass(frozen=True, slots=True)
class Account:
    """An account name, split into its role and the device id or instance it stands for."""

    name: str
    role: Role
    scope: str  # the device id, or the service instance


def device_client_id(device_id: str) -> str:
    """A device's account and client id: its device id (the `{id}` level of its topics)."""
    return device_id


def service_client_id(instance: str) -> str:
    """A service instance's account and client id."""
    return f"{SERVICE_PREFIX}{instance}"


def health_client_id(instance: str) -> str:
    """The account and client id of the health check of a service instance."""
    return f"{HEALTH_PREFIX}{instance}"


def dashboard_client_id(instance: str) -> str:
    """The account and client id of the dashboard served beside a service instance."""
    return f"{DASHBOARD_PREFIX}{instance}"


def parse_account(name: str) -> Account | None:
    """The account `name` stands for; None for a name no client of the contract uses."""
    prefixes = (
        (SERVICE_PREFIX, Role.SERVICE),
        (HEALTH_PREFIX, Role.HEALTH),
        (DASHBOARD_PREFIX, Role.DASHBOARD),
    )
    for prefix, role in prefixes:
        if name.startswith(prefix):
            instance = name.removeprefix(prefix)
            return Account(name, role, instance) if is_valid_device_id(instance) else None
    if name.startswith(RESERVED_PREFIX) or not is_valid_device_id(name):
        return None
    return Account(name, Role.DEVICE, name)
