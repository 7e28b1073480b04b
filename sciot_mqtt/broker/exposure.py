"""Mosquitto 2's safe default, for every broker the project runs or reaches: anonymous
access only on loopback; anything reachable from the network requires credentials."""

from __future__ import annotations

import ipaddress

from sciot_mqtt.errors import ConfigurationError


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses; any other name counts as the network
    (a name is not resolved: it may point elsewhere tomorrow)."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_credentials_off_loopback(host: str, has_credentials: bool, what: str) -> None:
    """Refuse an anonymous `what` (a broker, or the service's connection) beyond loopback."""
    if has_credentials or is_loopback(host):
        return
    raise ConfigurationError(
        f"{what} on {host!r} would be reachable from the network without credentials; "
        "outside loopback (127.0.0.1, ::1, localhost) every client must log in and ACLs must "
        "apply. Create accounts with `sciot-mqtt creds add` and pass the password file "
        "(--credentials-file / SCIOT_CREDENTIALS_FILE for the embedded broker; the service's "
        "own password with --password-file / SCIOT_PASSWORD_FILE), or bind 127.0.0.1"
    )
