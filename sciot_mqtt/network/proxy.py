"""A link-emulating TCP proxy between devices and the broker, unprivileged and portable.

Devices connect to the proxy instead of the broker; every byte they send and receive passes
through a `LinkEmulator` of the proxy's profile (the same model and profile names as the
device's in-process emulation, see `sciot_mqtt.device.emulation`): per direction a FIFO at
the profile's bandwidth (queueing when a device sends faster), a gamma-distributed one-way
latency with the profile's jitter, and loss as the stall a TCP retransmission causes
(one retransmission timeout, doubling when lost again). Delivery stays in order, as TCP's
is. Each accepted connection gets its own emulator, as each device has its own radio.

The unit here is a read from the socket (at most `chunk_bytes`), not a packet: loss applies
per read, so a large MQTT message that arrives in several reads can stall more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import structlog

from sciot_mqtt.network.emulator import LinkEmulator
from sciot_mqtt.network.link import Direction, LinkProfile, load_link_profile
from sciot_mqtt.transport import BrokerAddress

__all__ = ["LinkProxy", "ProxyStats"]

_log = structlog.get_logger("sciot.proxy")


@dataclass
class ProxyStats:
    connections: int = 0
    open_connections: int = 0
    bytes: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    retransmissions: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})

    def as_dict(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "open_connections": self.open_connections,
            "bytes": dict(self.bytes),
            "retransmissions": dict(self.retransmissions),
        }


class LinkProxy:
    """Listens on `listen` (port 0: any free) and forwards to `upstream` through the link.

    An async context manager; `address` is where devices connect.
    """

    def __init__(
        self,
        profile: LinkProfile | str,
        upstream: BrokerAddress,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int = 0,
        chunk_bytes: int = 16_384,
        queue_chunks: int = 256,
    ) -> None:
        self.profile = load_link_profile(profile) if isinstance(profile, str) else profile
        self.upstream = upstream
        self.stats = ProxyStats()
        self._listen = (listen_host, listen_port)
        self._seeds = itertools.count(seed * 1_000_003)
        self._chunk = chunk_bytes
        self._queue_chunks = queue_chunks
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> BrokerAddress:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.sockets[0].getsockname()[:2]
        return BrokerAddress(str(host), int(port))

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, *self._listen)
        _log.info(
            "link proxy listening",
            profile=self.profile.name,
            address=str(self.address),
            upstream=str(self.upstream),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            # Only after the connections are gone: wait_closed() waits for them on 3.12+.
            await server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Owned here and cancelled on exit, not left to the server's own bookkeeping.
        task = asyncio.create_task(self._relay(reader, writer), name="proxy-connection")
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _relay(
        self, device_reader: asyncio.StreamReader, device_writer: asyncio.StreamWriter
    ) -> None:
        self.stats.connections += 1
        self.stats.open_connections += 1
        link = LinkEmulator(self.profile, seed=next(self._seeds))
        try:
            try:
                broker_reader, broker_writer = await asyncio.open_connection(
                    self.upstream.host, self.upstream.port
                )
            except OSError as exc:
                _log.warning("proxy cannot reach the broker", error=str(exc))
                return
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pump(link, "up", device_reader, broker_writer))
                    group.create_task(self._pump(link, "down", broker_reader, device_writer))
            except* (ConnectionError, _Closed):
                pass  # either side hung up: the whole connection ends, as a TCP one would
            finally:
                _close(broker_writer)
        finally:
            _close(device_writer)
            self.stats.open_connections -= 1

    async def _pump(
        self,
        link: LinkEmulator,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Read as it comes, deliver when the link would: a reader and a delayed writer."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(self._queue_chunks)

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    raise _Closed
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        async with asyncio.TaskGroup() as group:
            group.create_task(deliver())
            while True:
                data = await reader.read(self._chunk)
                before = link.stats[direction].retransmissions
                due = time.monotonic() + (link.delay_s(direction, len(data)) if data else 0.0)
                self.stats.bytes[direction] += len(data)
                self.stats.retransmissions[direction] += (
                    link.stats[direction].retransmissions - before
                )
                # A full queue stops the reading: the sender feels the link's backpressure.
                await queue.put((due, data))
                if not data:
                    break


class _Closed(Exception):
    """One side closed: end the connection."""


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
