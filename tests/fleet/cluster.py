"""A real broker cluster for the fleet's tests: two aedes nodes sharing state through Redis.

Redis (Debian's redis-server, no persistence, on a free port in a temp dir) carries both
the messages between the nodes (mqemitter-redis) and the broker state (aedes-persistence-redis:
retained messages, wills, subscriptions, QoS 1 queues). `tests/fleet/aedes/node.js` runs one
node; `npm ci` there installs the pinned packages (`.ci/run` does it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sciot_mqtt.broker import free_port, until_accepting
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.transport import BrokerAddress
from tests.processes import Child, spawn

AEDES = Path(__file__).parent / "aedes"
# A node's wills are published by a survivor once it has been silent for three heartbeats:
# short, so that a test could see it; the clients' own wills do not wait for it.
HEARTBEAT_MS = 1000


def missing_tools() -> str | None:
    """What this machine lacks to run the cluster, with how to get it; None if nothing."""
    if shutil.which("node") is None:
        return "node (apt-get install nodejs)"
    if shutil.which("redis-server") is None:
        return "redis-server (apt-get install redis-server)"
    if not (AEDES / "node_modules" / "aedes").is_dir():
        return "aedes (npm ci in tests/fleet/aedes)"
    return None


def require_tools() -> None:
    """Skip without the tools; in CI (`CI` set) fail instead, as `.ci/run` installs them."""
    missing = missing_tools()
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{missing} is missing: .ci/run installs it")
    pytest.skip(f"the aedes cluster needs {missing}")


@dataclass(frozen=True)
class AedesCluster:
    redis: BrokerAddress  # Redis's address (it is no MQTT broker; BrokerAddress is host+port)
    nodes: tuple[BrokerAddress, BrokerAddress]
    processes: dict[str, Child]


async def _until_redis_answers(address: BrokerAddress, child: Child) -> None:
    """Redis accepts connections as soon as it has loaded; PING proves it answers."""
    await until_accepting(address, still_starting=lambda: child.process.returncode is None)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        answer = await reader.readline()
        assert answer == b"+PONG\r\n", answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _until_nodes_share_messages(nodes: tuple[BrokerAddress, BrokerAddress]) -> None:
    """A message published on the second node reaches a subscriber of the first.

    The nodes subscribe to Redis's channels once their listener is up, and nothing tells when
    that is done: the probe's publications are repeated until one crosses.
    """
    topic = "sciot-test/cluster-ready"
    async with (
        MqttProbe(nodes[0], topic, client_id="cluster-ready-sub") as receiver,
        MqttProbe(nodes[1], client_id="cluster-ready-pub") as sender,
    ):
        for attempt in itertools.count():
            mark = receiver.mark()
            await sender.publish(topic, str(attempt).encode())
            try:
                await receiver.expect(topic, since=mark, timeout=0.2)
                return
            except AssertionError:
                continue


@contextlib.asynccontextmanager
async def aedes_cluster(workdir: Path, start_timeout: float = 20.0) -> AsyncIterator[AedesCluster]:
    """Redis and two aedes nodes as child processes on free loopback ports, ready to use."""
    redis_address = BrokerAddress("127.0.0.1", free_port())
    redis_dir = workdir / "redis"
    redis_dir.mkdir()
    redis_argv = [
        "redis-server",
        "--bind",
        redis_address.host,
        "--port",
        str(redis_address.port),
        "--dir",
        str(redis_dir),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    node_script = str(AEDES / "node.js")
    env = dict(os.environ)
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(spawn(redis_argv, env, workdir, "redis"))
        async with asyncio.timeout(start_timeout):
            await _until_redis_answers(redis_address, redis)
        redis_url = f"redis://{redis_address.host}:{redis_address.port}"
        nodes: list[BrokerAddress] = []
        processes = {"redis": redis}
        for name in ("aedes-a", "aedes-b"):
            address = BrokerAddress("127.0.0.1", free_port())
            argv = ["node", node_script, str(address.port), redis_url, str(HEARTBEAT_MS)]
            node = await stack.enter_async_context(spawn(argv, env, workdir, name))
            processes[name] = node
            try:
                async with asyncio.timeout(start_timeout):
                    await until_accepting(
                        address, still_starting=lambda n=node: n.process.returncode is None
                    )
            except (TimeoutError, RuntimeError) as exc:
                raise AssertionError(f"{name} did not start: {node.output()[-2000:]}") from exc
            nodes.append(address)
        pair = (nodes[0], nodes[1])
        async with asyncio.timeout(start_timeout):
            await _until_nodes_share_messages(pair)
        yield AedesCluster(redis_address, pair, processes)
