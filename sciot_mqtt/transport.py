"""The one adapter around aiomqtt: every MQTT connection of the project goes through here.

aiomqtt's objects never leave this module; callers see `Inbound`, `LastWill`, `BrokerAddress`
and `ConnectionLostError`, so moving to aiomqtt 3 (paho replaced) touches this file only.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiomqtt

from sciot_mqtt.errors import ConnectionLostError


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Inbound:
    """A received message, in our own type."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


@dataclass(frozen=True, slots=True)
class LastWill:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttSession:
    """One MQTT 3.1.1 connection; an async context manager that is not re-entrant.

    Any failure of the underlying client surfaces as `ConnectionLostError`.
    """

    def __init__(
        self,
        broker: BrokerAddress,
        *,
        client_id: str,
        will: LastWill | None = None,
        keepalive: int = 10,
        clean_session: bool = True,
        timeout: float = 10.0,
        max_inflight: int = 100,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self._client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=client_id,
            will=aiomqtt.Will(will.topic, will.payload, will.qos, will.retain) if will else None,
            keepalive=keepalive,
            clean_session=clean_session,
            timeout=timeout,
            max_inflight_messages=max_inflight,
            protocol=aiomqtt.ProtocolVersion.V311,
        )

    async def __aenter__(self) -> Self:
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"cannot connect to {self.broker}: {exc}") from exc
        # paho leaves Nagle's algorithm on: with delayed ACKs every small publish then waits
        # ~40 ms for the previous one's ACK, which dwarfs the inference itself.
        sock = self._client._client.socket()  # aiomqtt 2 exposes no public accessor
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The connection may already be gone; then there is nothing left to close cleanly.
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(exc_type, exc, tb)

    def sever(self) -> None:
        """Cut the TCP connection without a DISCONNECT, as a crash or a power cut does: the
        broker then publishes the will. The session is unusable afterwards."""
        sock = self._client._client.socket()  # aiomqtt 2 exposes no public accessor
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish; with QoS 1 this returns once the broker has acknowledged."""
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"publish to {topic} failed: {exc}") from exc

    async def subscribe(self, *filters: str, qos: int = 1) -> None:
        if not filters:
            return
        try:
            await self._client.subscribe([(f, qos) for f in filters])
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"subscribe failed: {exc}") from exc

    async def unsubscribe(self, *filters: str) -> None:
        try:
            await self._client.unsubscribe(list(filters))
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"unsubscribe failed: {exc}") from exc

    async def messages(self) -> AsyncIterator[Inbound]:
        """Received messages until the connection drops (then `ConnectionLostError`)."""
        try:
            async for message in self._client.messages:
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    payload = b"" if payload is None else str(payload).encode()
                yield Inbound(str(message.topic), bytes(payload), message.retain, message.qos)
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"connection to {self.broker} lost: {exc}") from exc
        raise ConnectionLostError(f"connection to {self.broker} closed")


class Backoff:
    """Exponential reconnect delay with jitter, so a fleet does not reconnect in lockstep."""

    def __init__(
        self, initial: float = 0.2, maximum: float = 5.0, factor: float = 2.0, jitter: float = 0.2
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = self.initial
