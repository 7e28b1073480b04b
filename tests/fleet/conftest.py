"""The fleet's tests run on Mosquitto (the issue's acceptance), once: the devices' broker is it.
`aedes` is the broker cluster (tests/fleet/cluster.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sciot_mqtt.transport import BrokerAddress
from tests.fleet.cluster import AedesCluster, aedes_cluster, require_tools


@pytest_asyncio.fixture
async def sciot_broker(sciot_mosquitto: BrokerAddress) -> BrokerAddress:
    return sciot_mosquitto


@pytest_asyncio.fixture
async def aedes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AedesCluster]:
    """Redis and two aedes nodes on free ports; skipped (failed in CI) without the tools."""
    require_tools()
    async with aedes_cluster(tmp_path_factory.mktemp("aedes")) as cluster:
        yield cluster
