"""`sciot-mqtt health`: exit 0 if the service is alive, as a container health check.

Alive means a `stats` message of the instance arrives through the broker within the timeout:
that needs the broker up, the login accepted and the service's loop running (a retained
`online: true` alone would outlive a hung service). It reads the same settings as `up`, and
logs in as the instance's health account (`sciot-health-INSTANCE`, `health_password`), never
as the service: a client id belongs to one account, so that would take the service's session.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sciot_mqtt.broker.exposure import is_loopback
from sciot_mqtt.errors import ConnectionLostError
from sciot_mqtt.protocol import ServiceStats, ServiceTopic, service_topic
from sciot_mqtt.protocol.accounts import health_client_id
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.transport import BrokerAddress, MqttSession


def add_health_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "health",
        help="exit 0 if the service's stats arrive through the broker (settings as for `up`)",
    )
    p.add_argument("--timeout", type=float, help="seconds to wait (default: 2 stats intervals + 2)")
    p.set_defaults(handler=_cmd_health)


def _address(settings: ServiceSettings) -> BrokerAddress:
    host = settings.host
    if not settings.external_broker and not is_loopback(host):
        host = "127.0.0.1"  # the embedded broker binds every interface; reach it locally
    return BrokerAddress(
        host, settings.port, tls=settings.broker_tls(), credentials=settings.health_credentials()
    )


async def service_alive(address: BrokerAddress, instance: str, timeout: float) -> str | None:
    """None if a `stats` of `instance` arrives within `timeout`; else what went wrong."""
    topic = service_topic(instance, ServiceTopic.STATS)
    try:
        async with asyncio.timeout(timeout):
            async with MqttSession(address, client_id=health_client_id(instance)) as mqtt:
                await mqtt.subscribe(topic, qos=0)
                async for message in mqtt.messages():
                    if message.topic == topic:
                        ServiceStats.decode(message.payload)
                        return None
    except TimeoutError:
        return f"no stats from service {instance!r} within {timeout:g} s"
    except ConnectionLostError as exc:
        return str(exc)
    return "the broker closed the connection"


def _cmd_health(args: argparse.Namespace) -> int:
    from_environment: dict[str, Any] = {}  # every setting from SCIOT_* and .env, as for `up`
    settings = ServiceSettings(**from_environment)
    timeout = args.timeout if args.timeout is not None else 2 * settings.stats_interval + 2
    problem = asyncio.run(service_alive(_address(settings), settings.instance, timeout))
    if problem is not None:
        print(f"sciot-mqtt health: {problem}", file=sys.stderr)
        return 1
    return 0
