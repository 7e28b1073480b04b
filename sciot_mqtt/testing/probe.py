"""An observer client for tests: records every message and waits for the one you expect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

from sciot_mqtt.errors import ProtocolError
from sciot_mqtt.protocol import Message
from sciot_mqtt.transport import BrokerAddress, Inbound, MqttSession

M = TypeVar("M", bound=Message)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (`+` one level, `#` the rest)."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


class MqttProbe:
    """Subscribes to `filters` and keeps every message it receives, in order.

    `expect*` wait, with a timeout, for the first message after a cursor that matches; use
    `mark()` before an action to look only at what the action causes.
    """

    def __init__(self, broker: BrokerAddress, *filters: str, client_id: str = "sciot-probe"):
        self.broker = broker
        self.filters = filters or ("#",)
        self.messages: list[Inbound] = []
        self._session = MqttSession(broker, client_id=client_id)
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._session.__aenter__()
        self._reader = asyncio.create_task(self._read(), name="probe-reader")
        await self._session.subscribe(*self.filters)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._session.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        async for message in self._session.messages():
            async with self._arrived:
                self.messages.append(message)
                self._arrived.notify_all()

    def mark(self) -> int:
        """A cursor: `expect(..., since=probe.mark())` ignores what came before."""
        return len(self.messages)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        await self._session.publish(topic, payload, qos=qos, retain=retain)

    async def expect(
        self,
        topic: str,
        where: Callable[[Inbound], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = 5.0,
    ) -> Inbound:
        """The first message on `topic` (a filter) after `since` for which `where` holds."""
        position = since

        def find() -> Inbound | None:
            nonlocal position
            while position < len(self.messages):
                message = self.messages[position]
                position += 1
                if topic_matches(topic, message.topic) and (where is None or where(message)):
                    return message
            return None

        try:
            async with asyncio.timeout(timeout), self._arrived:
                while (found := find()) is None:
                    await self._arrived.wait()
                return found
        except TimeoutError:
            seen = [m.topic for m in self.messages[since:]][-10:]
            raise AssertionError(
                f"no message on {topic!r} matched within {timeout}s; last topics seen: {seen}"
            ) from None

    async def expect_message(
        self,
        message_type: type[M],
        topic: str,
        where: Callable[[M], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = 5.0,
    ) -> M:
        """Like `expect`, decoding payloads as `message_type` (undecodable ones are skipped)."""
        decoded: dict[int, M] = {}

        def accept(message: Inbound) -> bool:
            try:
                value = message_type.decode(message.payload)
            except ProtocolError:
                return False
            if where is not None and not where(value):
                return False
            decoded[id(message)] = value
            return True

        found = await self.expect(topic, accept, since=since, timeout=timeout)
        return decoded[id(found)]
