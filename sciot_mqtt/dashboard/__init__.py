"""The live web dashboard of `sciot-mqtt up --dashboard` (optional extra `dashboard`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sciot_mqtt.transport import BrokerAddress

from .feed import BrokerFeed
from .state import FleetState
from .web import DashboardServer

__all__ = ["BrokerFeed", "DashboardServer", "FleetState", "dashboard"]


@contextlib.asynccontextmanager
async def dashboard(
    broker: BrokerAddress, instance: str, host: str, port: int
) -> AsyncIterator[DashboardServer]:
    """The feed and the web server, running until the block ends."""
    async with (
        BrokerFeed(broker, instance, FleetState()) as feed,
        DashboardServer(feed, host, port) as server,
    ):
        yield server
