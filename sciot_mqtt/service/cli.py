"""`sciot-mqtt up`: the broker (embedded by default) and the service, with optionally a
local swarm, the dashboard, or N instances as processes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sciot_mqtt._commands import add_tls_flags, overrides, stop_when_ended, until_signalled
from sciot_mqtt._optional import require_extra
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.logs import configure_logging
from sciot_mqtt.service.processes import PASSED_FLAGS
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.transport import BrokerAddress

if TYPE_CHECKING:
    from sciot_mqtt.swarm import DevicePlan, Mix

_SERVICE_FLAGS = (
    "host",
    "port",
    "external_broker",
    "instance",
    *PASSED_FLAGS,  # the ones `up --processes` passes on to every instance
    "credentials_file",
    "password_file",
    "tls_ca",
    "tls_cert",
    "tls_key",
)


def add_up_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run the broker (embedded by default) and the service")
    p.add_argument("--host", help="broker host; the embedded broker binds it (127.0.0.1)")
    p.add_argument("--port", type=int, help="broker port (1883)")
    p.add_argument(
        "--external-broker",
        action="store_const",
        const=True,
        help="connect to a running broker (e.g. Mosquitto) instead of embedding amqtt",
    )
    p.add_argument("--instance", help="service instance name used in its topics (edge)")
    p.add_argument("--heartbeat-interval", type=float, help="seconds, told to devices (5)")
    p.add_argument("--stats-interval", type=float, help="seconds between stats messages (5)")
    p.add_argument("--models", help="comma-separated model ids served, preferred first")
    p.add_argument("--max-payload", type=int, help="largest accepted payload in bytes")
    p.add_argument("--split", type=int, help="split point told to every device")
    p.add_argument("--workers", type=int, help="threads running model tails (2)")
    p.add_argument(
        "--max-batch", type=int, help="waiting tails of one split run in one invoke, at most (8)"
    )
    p.add_argument(
        "--placement",
        choices=["hash", "least-loaded", "tiered"],
        help="how the instances on one broker share the devices (hash)",
    )
    p.add_argument("--capacity", type=float, help="this instance's weight in the placement (1)")
    p.add_argument("--tier", choices=["edge", "cloud"], help="`tiered`: its tier (edge)")
    p.add_argument(
        "--tier-high", type=float, help="`tiered`: queue per capacity making an edge busy (4)"
    )
    p.add_argument(
        "--tier-low", type=float, help="`tiered`: queue per capacity below which it has room (1)"
    )
    p.add_argument(
        "--handover-timeout",
        type=float,
        help="seconds a clean stop waits for the fleet to take its devices (5)",
    )
    p.add_argument("--model-cache", help="prepared-model cache directory")
    p.add_argument("--log-level", help="debug, info, warning, error (info)")
    p.add_argument("--log-format", choices=["auto", "json", "console"])
    p.add_argument(
        "--swarm",
        type=int,
        default=0,
        metavar="N",
        help="also run N simulated devices in this process, with a live view (0)",
    )
    p.add_argument("--swarm-mix", type=Path, help="their mix file (default: see README)")
    p.add_argument(
        "--dashboard",
        type=_listen_address,
        metavar="[HOST:]PORT",
        help="serve the live web dashboard there (host 127.0.0.1 unless given; port 0: any free)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N instances as processes, named INSTANCE-1..N, beside the broker (1)",
    )
    p.add_argument(
        "--credentials-file",
        help="embedded broker: password file (sciot-mqtt creds); enables logins and ACLs",
    )
    p.add_argument(
        "--password-file",
        help="file holding the password of the instance's account (sciot-service-INSTANCE)",
    )
    add_tls_flags(p)
    p.set_defaults(handler=_cmd_up)


def _listen_address(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` of `--dashboard`, as (host, port)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"want [HOST:]PORT, got {text!r}")
    return host, int(port)


def _cmd_up(args: argparse.Namespace) -> int:
    settings = ServiceSettings(**overrides(args, _SERVICE_FLAGS))
    configure_logging(settings.log_level, settings.log_format)
    address = _service_broker(settings)  # refuses unsafe exposure before loading models
    if args.dashboard is not None:
        require_extra("dashboard", "up --dashboard")
    if args.processes != 1:
        return _up_processes(args, settings, address)
    swarm = None
    if args.swarm:
        require_extra("swarm", "up --swarm")
        from sciot_mqtt.swarm import load_mix, plan_devices

        if address.credentials is not None or address.tls is not None:
            raise ConfigurationError(
                "--swarm runs anonymous simulated devices on a loopback broker; it cannot be "
                "combined with logins or TLS (use `sciot-mqtt swarm --external HOST:PORT` "
                "against a test broker instead)"
            )
        mix = load_mix(args.swarm_mix)
        swarm = plan_devices(mix, args.swarm), mix
        if sys.stderr.isatty() and args.log_level is None:
            # The live view owns the terminal; routine log lines would tear it.
            configure_logging("warning", settings.log_format)
    asyncio.run(
        until_signalled(lambda stop: _run_up(settings, address, stop, swarm, args.dashboard))
    )
    return 0


def _up_processes(
    args: argparse.Namespace, settings: ServiceSettings, address: BrokerAddress
) -> int:
    from sciot_mqtt.service.processes import instance_names, run_instances

    if args.processes < 1:
        raise ConfigurationError("--processes: at least 1")
    if args.swarm:
        raise ConfigurationError("--processes and --swarm cannot be combined")
    if address.credentials is not None or address.tls is not None or settings.credentials_file:
        raise ConfigurationError(
            "--processes runs every instance without a login or TLS; with logins start each "
            "instance with its own account: `sciot-mqtt up --external-broker --instance NAME "
            "--password-file FILE` (README, 'A fleet of instances')"
        )
    names = instance_names(settings.instance, args.processes)
    passed = overrides(args, PASSED_FLAGS)

    async def work(stop: asyncio.Event) -> int:
        from sciot_mqtt.broker import EmbeddedBroker
        from sciot_mqtt.broker.limits import max_packet_size

        async with contextlib.AsyncExitStack() as stack:
            broker_address = address
            if not settings.external_broker:
                broker = await stack.enter_async_context(
                    EmbeddedBroker(
                        settings.host,
                        settings.port,
                        max_packet_size=max_packet_size(settings.max_payload),
                    )
                )
                broker_address = broker.address
            if args.dashboard is not None:
                from sciot_mqtt.dashboard import dashboard

                # One page for the whole fleet: it reads every instance from the broker.
                server = await stack.enter_async_context(
                    dashboard(broker_address, settings.instance, *args.dashboard)
                )
                print(f"dashboard: {server.url}", file=sys.stderr, flush=True)
            return await run_instances(
                broker_address, names, passed, stop, settings.handover_timeout + 10
            )

    status = 0

    async def run(stop: asyncio.Event) -> None:
        nonlocal status
        status = await work(stop)

    asyncio.run(until_signalled(run))
    return status


def _service_broker(settings: ServiceSettings) -> BrokerAddress:
    """How the service reaches its broker; refuses anonymous access beyond loopback."""
    from sciot_mqtt.broker.exposure import require_credentials_off_loopback

    credentials = settings.broker_credentials()
    tls = settings.broker_tls()
    if settings.external_broker:
        require_credentials_off_loopback(
            settings.host, credentials is not None, "the service's broker connection"
        )
        return BrokerAddress(settings.host, settings.port, tls=tls, credentials=credentials)
    if tls is not None:
        raise ConfigurationError(
            "the embedded broker speaks plain MQTT: TLS is for --external-broker"
        )
    require_credentials_off_loopback(
        settings.host, settings.credentials_file is not None, "the embedded broker"
    )
    if settings.credentials_file is not None and credentials is None:
        raise ConfigurationError(
            f"the embedded broker requires logins ({settings.credentials_file}): give the "
            f"service account's password (`sciot-mqtt creds add {settings.account}`, then "
            "--password-file or SCIOT_PASSWORD_FILE)"
        )
    # The embedded broker's port is known once it listens (port 0); only the login is set here.
    return BrokerAddress(settings.host, settings.port, credentials=credentials)


async def _run_up(
    settings: ServiceSettings,
    address: BrokerAddress,
    stop: asyncio.Event,
    swarm: tuple[list[DevicePlan], Mix] | None = None,
    dashboard_at: tuple[str, int] | None = None,
) -> None:
    from sciot_mqtt.broker import EmbeddedBroker
    from sciot_mqtt.broker.limits import max_packet_size
    from sciot_mqtt.models.catalog import resolve_packages
    from sciot_mqtt.service import Service

    packages = resolve_packages(settings.models, settings.model_cache)
    async with contextlib.AsyncExitStack() as stack:
        if not settings.external_broker:
            broker = await stack.enter_async_context(
                EmbeddedBroker(
                    settings.host,
                    settings.port,
                    credentials_file=settings.credentials_file,
                    max_packet_size=max_packet_size(settings.max_payload),
                )
            )
            address = dataclasses.replace(broker.address, credentials=address.credentials)
        service = await stack.enter_async_context(Service(settings, address, packages=packages))
        if dashboard_at is not None:
            from sciot_mqtt.dashboard import dashboard

            server = await stack.enter_async_context(
                dashboard(address, settings.instance, *dashboard_at)
            )
            # Printed, not logged: the swarm's live view silences routine logs.
            print(f"dashboard: {server.url}", file=sys.stderr, flush=True)
        # What start-up built (imports, models, interpreters, tables) lives as long as the
        # process: frozen, a full collection no longer walks its ~70,000 objects. Measured
        # under `bench throughput` load: the longest full collection 63 ms before, 13 after.
        gc.freeze()
        watcher = asyncio.create_task(stop_when_ended(service, stop), name="up-watch-service")
        try:
            if swarm is None:
                await stop.wait()
            else:
                from sciot_mqtt.swarm.live import run_local_swarm

                await run_local_swarm(*swarm, packages, address, stop)
        finally:
            watcher.cancel()
        await service.stop()
        if service.failure is not None:
            raise service.failure
