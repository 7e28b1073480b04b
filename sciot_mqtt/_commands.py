"""What the command modules share: settings from flags, running until a signal, TLS flags."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sciot_mqtt.device import Device
    from sciot_mqtt.service import Service


def overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """CLI flags given explicitly; the rest comes from the environment or defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


async def until_signalled(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await work(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def add_tls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", help="CA file: connect to the broker with TLS, trusting it")
    p.add_argument("--tls-cert", help="client certificate (PEM), if the broker requires one")
    p.add_argument("--tls-key", help="client key (PEM)")


async def stop_when_ended(runner: Service | Device, stop: asyncio.Event) -> None:
    """A service or device that stopped by itself (the broker refused it) ends the command."""
    await runner.ended()
    stop.set()
