"""The one adapter around aiomqtt: every MQTT connection of the project goes through here.

aiomqtt's objects never leave this module; callers see `Inbound`, `LastWill`, `BrokerAddress`
(with its `Credentials` and `TlsConfig`) and `ConnectionLostError`, so moving to aiomqtt 3
(paho replaced) touches this file only.
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiomqtt

from sciot_mqtt.errors import AccessDeniedError, ConfigurationError, ConnectionLostError

# CONNACK "bad user name or password" and "not authorized": MQTT 3.1.1 codes, and the MQTT 5
# reason codes paho 2 reports them as.
_REFUSED_CREDENTIALS = frozenset({4, 5, 134, 135})


@dataclass(frozen=True, slots=True)
class Credentials:
    """MQTT username and password; the password never appears in a repr or a log line."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS to the broker: trust `ca_file` (None: the system's CAs), and present a client
    certificate when the broker requires one. The broker's name is always checked."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker is and how to reach it: plain or TLS, anonymous or with credentials."""

    host: str
    port: int
    tls: TlsConfig | None = None
    credentials: Credentials | None = None

    def __str__(self) -> str:
        how = ["TLS"] if self.tls is not None else []
        if self.credentials is not None:
            how.append(f"user {self.credentials.username}")
        return f"{self.host}:{self.port}" + (f" ({', '.join(how)})" if how else "")


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
        credentials = broker.credentials
        try:
            tls_context = broker.tls.context() if broker.tls is not None else None
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load the TLS files for {broker}: {exc}") from exc
        self._client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=client_id,
            username=credentials.username if credentials is not None else None,
            password=credentials.password if credentials is not None else None,
            tls_context=tls_context,
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
        except aiomqtt.MqttCodeError as exc:
            if exc.rc is not None and _code(exc.rc) in _REFUSED_CREDENTIALS:
                raise AccessDeniedError(
                    f"{self.broker} refused the connection: {exc}; "
                    + (
                        "check the username and password"
                        if self.broker.credentials is not None
                        else "the broker requires a username and password"
                    )
                ) from exc
            raise ConnectionLostError(f"cannot connect to {self.broker}: {exc}") from exc
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
        # A connection that dropped while no one was reading messages leaves aiomqtt's
        # "disconnected" future holding an unretrieved exception, which asyncio reports as
        # "Future exception was never retrieved" when it is collected. The loss was already
        # reported (or is moot at exit), so mark it retrieved.
        disconnected = self._client._disconnected  # aiomqtt 2 exposes no public accessor
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()

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
        """Subscribe; `AccessDeniedError` names the filters the broker refused (the others
        stay subscribed)."""
        if not filters:
            return
        try:
            granted = await self._client.subscribe([(f, qos) for f in filters])
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"subscribe failed: {exc}") from exc
        # 0x80 in the SUBACK: refused (by ACLs, on our brokers).
        refused = [f for f, code in zip(filters, granted, strict=False) if _code(code) >= 0x80]
        if refused:
            user = self.broker.credentials.username if self.broker.credentials else "anonymous"
            raise AccessDeniedError(f"{self.broker} refused {user} the subscription to {refused}")

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


def _code(code: object) -> int:
    """paho reports a SUBACK entry as an int or as a ReasonCode."""
    value = getattr(code, "value", code)
    return value if isinstance(value, int) else 0x80


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
