"""`sciot-mqtt health`: exit 0 if the service is serving, as a container health check.

Serving means it answers a `ping` through the broker within the timeout: that needs the
broker up, the login accepted, the service's loop running, and its subscriptions working (a
retained `online: true` would outlive a hung service, and `stats` keep flowing from a service
that lost its subscriptions and hears no device). It reads the same settings as `up`, and
logs in as the instance's health account (`sciot-health-INSTANCE`, `health_password`), never
as the service: a client id belongs to one account, so that would take the service's session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
from typing import Any

from sciot_mqtt.broker.exposure import is_loopback
from sciot_mqtt.errors import ConnectionLostError, ProtocolError
from sciot_mqtt.protocol import Ping, Pong, ServiceTopic, service_topic
from sciot_mqtt.protocol.accounts import health_client_id
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.transport import BrokerAddress, MqttSession


def add_health_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "health",
        help="exit 0 if the service answers a ping through the broker (settings as for `up`)",
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
    """None if `instance` answers a ping within `timeout`; else what went wrong."""
    pong_topic = service_topic(instance, ServiceTopic.PONG)
    ping = Ping(nonce=secrets.token_hex(8))
    try:
        async with (
            asyncio.timeout(timeout),
            MqttSession(address, client_id=health_client_id(instance)) as mqtt,
        ):
            await mqtt.subscribe(pong_topic)
            asker = asyncio.create_task(_ask(mqtt, instance, ping), name="health-ping")
            try:
                async for message in mqtt.messages():
                    if (
                        message.topic == pong_topic
                        and Pong.decode(message.payload).nonce == ping.nonce
                    ):
                        return None
            finally:
                asker.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionLostError):
                    await asker
    except TimeoutError:
        return f"service {instance!r} did not answer a ping within {timeout:g} s"
    except ConnectionLostError as exc:
        return str(exc)
    except ProtocolError as exc:
        return f"service {instance!r} answered with a malformed pong: {exc}"
    return "the broker closed the connection"


async def _ask(mqtt: MqttSession, instance: str, ping: Ping) -> None:
    """Ping every second until cancelled (a ping sent while the service reconnects is lost)."""
    topic = service_topic(instance, ServiceTopic.PING)
    while True:
        await mqtt.publish(topic, ping.encode(), qos=1)
        await asyncio.sleep(1.0)


def _cmd_health(args: argparse.Namespace) -> int:
    from_environment: dict[str, Any] = {}  # every setting from SCIOT_* and .env, as for `up`
    settings = ServiceSettings(**from_environment)
    timeout = args.timeout if args.timeout is not None else 2 * settings.stats_interval + 2
    problem = asyncio.run(service_alive(_address(settings), settings.instance, timeout))
    if problem is not None:
        print(f"sciot-mqtt health: {problem}", file=sys.stderr)
        return 1
    return 0
