"""amqtt 0.12.1 with three holes closed, used by `EmbeddedBroker` (the adapter around amqtt).

Each fix is the smallest change that makes the embedded broker behave as Mosquitto does; each
says what upstream does and why that is a hole. amqtt 0.12.1 is the newest release (PyPI) and
its main branch (commit 175202e, August 2026) still has all three.

1. Retained messages leak: see `_publish_retained_messages_for_subscription`.
2. Session takeover before authentication: amqtt reads a CONNECT and at once deletes the stored
   session of that client id (clean session) or copies the CONNECT's will, username and
   password into it (persistent session), and only then asks the auth plugins. A client that
   fails to log in could so leave a live client connected but deaf (its subscriptions gone),
   or plant a will that fires on the live client's topics. Here the CONNECT is authenticated
   first, on a session of its own, and a refused client never reaches the stored sessions.
3. Unbounded packets: amqtt reads a packet's whole declared length (up to 256 MB) into memory
   before anything can judge it. Here a packet declaring more than `max_packet_size` bytes
   closes the connection before its body is read, as Mosquitto's `max_packet_size` does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.packet import MQTTFixedHeader
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id

_log = logging.getLogger("sciot.broker.access")


class LimitedReader(StreamReaderAdapter):  # type: ignore[misc]  # amqtt ships no types
    """A connection's reader that knows the largest packet its broker accepts."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_packet_size: int
    ) -> None:
        super().__init__(reader)
        self.max_packet_size = max_packet_size
        self._transport = writer.transport

    def refuse(self, packet_size: int) -> NoDataError:
        """Drop the connection without reading on; the error makes amqtt stop reading too
        (it reads the closed stream's end next, and closes the session as for a lost client,
        will included)."""
        peer = self._transport.get_extra_info("peername")
        _log.warning(
            "closed the connection of %s: a packet of %d B, over the %d B limit",
            peer,
            packet_size,
            self.max_packet_size,
        )
        self._transport.abort()
        return NoDataError(f"packet of {packet_size} B over the {self.max_packet_size} B limit")


def _packet_size(remaining_length: int) -> int:
    """The whole packet: the type byte, the length's own 1 to 4 bytes, and the rest."""
    length_bytes = 1
    while remaining_length >= 128**length_bytes and length_bytes < 4:
        length_bytes += 1
    return 1 + length_bytes + remaining_length


_unchecked_fixed_header = MQTTFixedHeader.from_stream.__func__


async def _checked_fixed_header(cls: type[MQTTFixedHeader], reader: ReaderAdapter) -> Any:
    header = await _unchecked_fixed_header(cls, reader)
    if header is not None and isinstance(reader, LimitedReader):
        size = _packet_size(header.remaining_length)
        if size > reader.max_packet_size:
            raise reader.refuse(size)
    return header


def install_packet_limit() -> None:
    """Check every fixed header amqtt decodes (CONNECT included) before the body is read.

    amqtt decodes all fixed headers in this one class method, so it is the one place that
    sees a packet's declared length first. Only connections of a `Broker` that wraps its
    readers in `LimitedReader` are checked; any other use of amqtt is unchanged.
    """
    if MQTTFixedHeader.from_stream.__func__ is not _checked_fixed_header:
        MQTTFixedHeader.from_stream = classmethod(_checked_fixed_header)


class FixedBroker(Broker):  # type: ignore[misc]  # amqtt ships no types
    """amqtt's broker with the fixes above. `max_packet_size` None: no limit (amqtt's own)."""

    def __init__(self, config: dict[str, Any], *, max_packet_size: int | None = None) -> None:
        super().__init__(config)
        self._max_packet_size = max_packet_size
        if max_packet_size is not None:
            install_packet_limit()

    # --- 3. unbounded packets -------------------------------------------------------------

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        if self._max_packet_size is None:
            await super().stream_connected(reader, writer, listener_name)
            return
        await self._client_connected(
            listener_name,
            LimitedReader(reader, writer, self._max_packet_size),
            StreamWriterAdapter(writer),
        )

    # --- 2. authenticate before any stored session is touched -------------------------------

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        """Upstream's method with the authentication moved in front of the session lookup.

        `_handle_client_session` authenticates again as upstream does (on the resumed session
        for a persistent one, which now carries the same login): cheap, and it keeps the rest
        of amqtt's flow unchanged.
        """
        peer = f"{remote_address}:{remote_port}"
        try:
            handler, incoming = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except AMQTTError as exc:
            raise AMQTTError(f"{peer}: cannot read first packet as CONNECT: {exc}") from exc
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(f"invalid connection from {peer}: {exc}") from exc
        except NoDataError as exc:
            raise AMQTTError(f"no data from {peer}: {exc}") from exc

        if not await self._authenticate(incoming, None):
            # As upstream refuses (CONNACK "not authorized", then close), but before any
            # stored session was looked at.
            handler.attach(incoming, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise MQTTError(f"refused client {incoming.client_id!r} from {peer}: login failed")

        # From here on as upstream: an accepted client may clear or resume its own session.
        if incoming.clean_session:
            if incoming.client_id:
                await self._delete_session(incoming.client_id)
            else:
                incoming.client_id = gen_client_id()
            incoming.parent = 0
            session = incoming
        elif incoming.client_id in self._sessions:
            session, _ = self._sessions[incoming.client_id]
            session.will_flag = incoming.will_flag
            session.will_message = incoming.will_message
            session.will_topic = incoming.will_topic
            session.will_qos = incoming.will_qos
            session.will_retain = incoming.will_retain
            session.keep_alive = incoming.keep_alive
            session.username = incoming.username
            session.password = incoming.password
            session.parent = 1
        else:
            incoming.parent = 0
            session = incoming

        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    # --- 1. retained messages only where they may go --------------------------------------

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        """On every CONNECT amqtt sends the new client the retained messages of every filter
        *any* client subscribed to, and on SUBSCRIBE it sends retained messages without
        asking the topic plugins. Both would hand one device another's retained `state`,
        `assign` and `split`. Here retained messages go only to a session subscribed to the
        filter, and only those its account may read."""
        topic_filter, qos = subscription
        subscribers = self._subscriptions.get(topic_filter, [])
        if not any(s.client_id == session.client_id for s, _ in subscribers):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            sends.append(
                asyncio.ensure_future(
                    handler.mqtt_publish(
                        retained.topic, retained.data, min(qos, retained.qos or qos), retain=True
                    )
                )
            )
        if sends:
            await asyncio.wait(sends)
