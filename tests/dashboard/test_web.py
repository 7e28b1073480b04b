"""The dashboard's web server on its own (no broker): files, the event stream, its errors."""

from __future__ import annotations

import json

import aiohttp
import pytest

from sciot_mqtt.dashboard import BrokerFeed, DashboardServer, FleetState
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.transport import BrokerAddress


def _feed() -> BrokerFeed:
    return BrokerFeed(BrokerAddress("127.0.0.1", 1), "edge", FleetState())  # never entered


async def test_it_serves_the_page_and_a_first_snapshot_and_nothing_else() -> None:
    async with DashboardServer(_feed(), "127.0.0.1", 0) as server, aiohttp.ClientSession() as http:
        async with http.get(server.url) as page:
            assert page.status == 200 and '<svg id="split-chart">' in await page.text()
        for name in ("../web.py", "state.py", "missing.js"):
            async with http.get(f"{server.url}static/{name}") as refused:
                assert refused.status == 404, name
        async with http.get(f"{server.url}events") as events:
            assert events.content_type == "text/event-stream"
            line = await events.content.readline()
            snapshot = json.loads(line.removeprefix(b"data: "))
            assert snapshot["broker"]["account"] == "sciot-dashboard-edge"
            assert (snapshot["instances"], snapshot["devices"]) == ([], {})
        async with http.post(f"{server.url}login", json={"nope": 1}) as bad:
            assert bad.status == 400


async def test_a_taken_port_is_a_clear_error() -> None:
    feed = _feed()
    async with DashboardServer(feed, "127.0.0.1", 0) as first:
        with pytest.raises(ConfigurationError, match="choose another"):
            async with DashboardServer(feed, "127.0.0.1", first.port):
                pass
