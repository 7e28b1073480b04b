"""The one adapter around aiomqtt: every MQTT connection of the project goes through here.

aiomqtt's objects never leave this module; callers see `Inbound`, `LastWill`, `BrokerAddress`
(with its `Credentials` and `TlsConfig`) and `ConnectionLostError`, so moving to aiomqtt 3
(paho replaced) touches this file only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiomqtt
import paho.mqtt.client as paho_mqtt

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
        self._raw_socket: socket.socket | None = None
        self._timeout = timeout
        self._inbox = _Inbox()
        self._loop: asyncio.AbstractEventLoop  # the one it connected on, from __aenter__

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
        if type(sock) is socket.socket:  # plain TCP; an SSLSocket buffers on its own
            self._raw_socket = sock
            _speed_up(self._client, sock)
        self._loop = asyncio.get_running_loop()
        self._inbox.attach(self._client)
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
        sock = self._raw_socket or self._client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish; returns once paho has sent it (QoS 0) or the broker has acknowledged it
        (QoS 1).

        paho directly, not `aiomqtt.Client.publish`: that one creates an `asyncio.Event`, a
        task (`asyncio.wait_for`) and a list of every pending message id per publish, which
        under load was a tenth of the service's loop. The wait here is one future, resolved by
        the session's own `on_publish`, and failed at once when the connection drops instead
        of after the timeout. A topic or payload MQTT cannot carry raises paho's ValueError."""
        info = self._client._client.publish(topic, payload, qos, retain)  # no public accessor
        if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionLostError(
                f"publish to {topic} failed: {paho_mqtt.error_string(info.rc)}"
            )
        if info.is_published():
            return
        acks = self._inbox.acks
        ack = acks[info.mid] = _Ack(self._loop)
        try:
            async with asyncio.timeout(self._timeout):
                await ack.future
        except TimeoutError:
            raise ConnectionLostError(f"publish to {topic} was not acknowledged") from None
        finally:
            acks.pop(info.mid, None)

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
        inbox = self._inbox
        while True:
            while inbox.items:
                yield inbox.items.popleft()
            if inbox.lost is not None:
                raise ConnectionLostError(f"connection to {self.broker} lost: {inbox.lost}")
            await inbox.wait()


class _Ack:
    """One publish awaiting its acknowledgement (or, at QoS 0, its write)."""

    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _Inbox:
    """Received messages as `Inbound`s, straight from paho's `on_message`.

    aiomqtt's message iterator creates a task and an `asyncio.wait` for every message it
    hands out; here a message is one `append`, and a reader that found nothing waits on one
    future. paho calls `on_message` from `loop_read`, which runs on the event loop's thread
    (aiomqtt's reader, or `read_when_readable` on plain TCP). When the connection drops, the
    messages already received are still handed out, then `lost` says why, and every publish
    still awaiting its acknowledgement fails at once."""

    __slots__ = ("_waiters", "acks", "items", "lost")

    def __init__(self) -> None:
        self.items: deque[Inbound] = deque()
        self.acks: dict[int, _Ack] = {}
        self.lost: BaseException | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def attach(self, client: aiomqtt.Client) -> None:
        paho = client._client  # aiomqtt 2 exposes no public accessor
        paho.on_message = self._on_message
        paho.on_publish = self._on_publish
        client._disconnected.add_done_callback(self._on_disconnected)

    def _on_message(self, _client: Any, _userdata: Any, message: paho_mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers refuse such topics; nothing could answer it
            return
        self.items.append(Inbound(topic, bytes(message.payload), message.retain, message.qos))
        self._wake()

    def _on_publish(
        self, _client: Any, _userdata: Any, mid: int, _reason: Any, _properties: Any
    ) -> None:
        ack = self.acks.pop(mid, None)
        if ack is not None:
            ack.set()

    def _on_disconnected(self, disconnected: asyncio.Future[None]) -> None:
        if disconnected.cancelled():
            self.lost = ConnectionLostError("the session ended")
        else:
            self.lost = disconnected.exception() or ConnectionLostError("disconnected")
        failure = ConnectionLostError(f"connection lost: {self.lost}")
        for ack in list(self.acks.values()):
            ack.fail(failure)
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self) -> None:
        """Until a message arrives or the connection drops."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


# --- fewer system calls per message -------------------------------------------------------
#
# Under load the service's CPU per message goes mostly to system calls (costly here, several
# times a bare-metal Linux's), not to Python: paho reads every packet in three or more `recv`
# calls (the command byte, each byte of the remaining length, the body), and every burst of
# publishes wakes the loop through its self-pipe and registers and unregisters a writer
# (`epoll_ctl` twice) before paho writes. Both are fixed here, inside the adapter.

_READ_CHUNK = 65536


class _BufferedSocket:
    """The connection's socket as paho sees it.

    Reads: one `recv` takes all the kernel has (up to 64 KiB) and paho's small reads are
    served from that; once a readable event's `recv` is used up (`fresh` false), the next
    read reports "nothing yet" without asking the kernel, which would only say the same at
    the cost of a system call. The loop's epoll is level-triggered, so bytes that arrived
    meanwhile make the socket readable again at once. `pending()` is what the reader asks
    after each `loop_read`: while bytes remain buffered it reads on, so a buffered message
    never waits for the next readable event.

    Writes: while `collecting`, paho's packets are appended to `_out` (and reported written),
    then `drain()` sends them in one call; bytes the kernel would not take stay in `_out`,
    ahead of anything paho writes later. Everything else is the socket's."""

    __slots__ = ("_buffer", "_out", "_pos", "_sock", "collecting", "fresh")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._pos = 0
        self._out = bytearray()
        self.collecting = False
        self.fresh = True  # the kernel may have bytes: this readable event has not read yet

    def recv(self, buffer_size: int) -> bytes:
        if self._pos >= len(self._buffer):
            if not self.fresh:
                raise BlockingIOError  # paho's "nothing yet"; epoll will call again
            # BlockingIOError when the kernel has nothing; b"" when the peer closed.
            self._buffer = self._sock.recv(max(buffer_size, _READ_CHUNK))
            self._pos = 0
            self.fresh = len(self._buffer) == _READ_CHUNK  # a full chunk: more may wait
        start = self._pos
        self._pos = min(start + buffer_size, len(self._buffer))
        return self._buffer[start : self._pos]

    def pending(self) -> int:
        return len(self._buffer) - self._pos

    def send(self, buffer: bytes | bytearray) -> int:
        if self.collecting or self._out:
            self._out += buffer
            return len(buffer)
        return self._sock.send(buffer)

    def drain(self) -> bool:
        """Send what was collected; False while the kernel's buffer is full."""
        while self._out:
            try:
                sent = self._sock.send(self._out)
            except BlockingIOError:
                return False
            del self._out[:sent]
        return True

    def close(self) -> None:
        # paho closes right after writing DISCONNECT (into `_out`): send it first, or the
        # broker sees a dropped connection and publishes the will.
        with contextlib.suppress(OSError):
            self.drain()
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _speed_up(client: aiomqtt.Client, sock: socket.socket) -> None:
    """Buffered reads, one `recv` per readable event, and writes flushed once per loop
    iteration, in one `send`.

    paho asks for a writer whenever it queues a packet; aiomqtt answers from any thread with
    `call_soon_threadsafe(add_writer)`. Once connected every publish comes from the loop's own
    thread, so the packets queued in one iteration (results, PUBACKs) are written together by
    one `loop_write` scheduled with `call_soon`; only when the kernel's buffer is full does a
    writer wait for the socket."""
    paho = client._client  # aiomqtt 2 exposes no public accessor
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    fallback = paho.on_socket_register_write
    buffered = _BufferedSocket(sock)
    fileno = sock.fileno()

    def fail(exc: Exception) -> None:
        disconnected = client._disconnected  # how aiomqtt's own callbacks report a failure
        if not disconnected.done():
            disconnected.set_exception(exc)

    def write_when_writable() -> None:
        try:
            if buffered.drain():
                paho.loop_write()  # may remove this writer (paho has nothing left)
            if buffered.drain() and not paho.want_write():
                loop.remove_writer(fileno)
            else:
                loop.add_writer(fileno, write_when_writable)
        except Exception as exc:  # a broken pipe: the connection is gone
            fail(exc)

    def flush() -> None:
        try:
            buffered.collecting = True
            try:
                paho.loop_write()
            finally:
                buffered.collecting = False
            if not buffered.drain() or paho.want_write():  # the kernel's buffer is full
                loop.add_writer(fileno, write_when_writable)
        except Exception as exc:
            fail(exc)

    def register_write(paho_client: Any, userdata: Any, paho_sock: Any) -> None:
        if threading.get_ident() != loop_thread and fallback is not None:
            fallback(paho_client, userdata, paho_sock)
        else:
            loop.call_soon(flush)

    def read_when_readable() -> None:
        # aiomqtt's own reader, plus marking the event fresh for `_BufferedSocket.recv`.
        buffered.fresh = True
        try:
            while True:
                paho.loop_read()
                if not buffered.pending():
                    break
        except Exception as exc:
            fail(exc)

    paho.on_socket_register_write = register_write
    paho._sock = buffered
    loop.remove_reader(fileno)
    loop.add_reader(fileno, read_when_readable)


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
