"""What the service publishes to devices: messages, error answers, rebirth requests, pongs,
echo replies.

Replies any client can provoke (errors, rebirths, pongs, echo replies) share one budget
(`limits.py`), so a flood of bad input or of heartbeats from unknown ids is counted, not
amplified.
"""

from __future__ import annotations

from typing import Any

from sciot_mqtt.errors import ConnectionLostError, ProtocolError
from sciot_mqtt.protocol import (
    Command,
    DeviceTopic,
    Echo,
    EchoReply,
    ErrorReport,
    Message,
    Ping,
    Pong,
    ServiceTopic,
    device_topic,
    service_topic,
)
from sciot_mqtt.service.limits import TokenBucket
from sciot_mqtt.service.registry import Registry
from sciot_mqtt.service.stats import Counters
from sciot_mqtt.transport import MqttSession

__all__ = ["MqttOutbox"]

_MAX_REPLY_TOPIC_LEN = 512


class MqttOutbox:
    """Publishes on the service's current connection (`mqtt`, None while disconnected); the
    inference pipeline's `Outbox`."""

    def __init__(
        self,
        instance: str,
        *,
        registry: Registry,
        counters: Counters,
        budget: TokenBucket,
        log: Any,
    ) -> None:
        self.instance = instance
        self.mqtt: MqttSession | None = None
        self._registry = registry
        self._counters = counters
        self._budget = budget
        self._log = log

    async def send(self, device_id: str, message: Message) -> int:
        """Publish `message` on the device's topic; returns the payload's size."""
        mqtt = self.mqtt
        if mqtt is None:
            raise ConnectionLostError("not connected to the broker")
        payload = message.encode()
        topic = message.TOPIC
        assert isinstance(topic, DeviceTopic), f"{type(message).__name__} is not a device topic"
        await mqtt.publish(
            device_topic(device_id, topic), payload, qos=message.QOS, retain=message.RETAIN
        )
        self._counters.tx += 1
        return len(payload)

    async def reject(
        self, device_id: str, topic: DeviceTopic, error: ProtocolError, seq: int | None
    ) -> None:
        """Count a rejected message and answer on the device's `error` topic, within budget."""
        self._counters.errors += 1
        if topic is DeviceTopic.INFER:
            self._counters.infer_rejected += 1
        if not self._budget.take():
            return  # flooded: counted (stats, and the log's summary), not answered
        self._log.warning(
            "message rejected",
            device_id=device_id[:80],
            topic=topic.value,
            code=error.code.value,
            reason=error.reason,
        )
        # An invalid id still names a topic we can answer on, unless it is absurdly long.
        if len(device_id) <= _MAX_REPLY_TOPIC_LEN:
            report = ErrorReport(
                code=error.code, reason=error.reason[:500], topic=topic.value, seq=seq
            )
            await self.send(device_id, report)

    async def request_rebirth(self, device_id: str, why: str) -> None:
        """Ask a device to announce itself again (rate-limited per device and overall)."""
        if self._registry.should_request_rebirth(device_id) and self._budget.take():
            self._log.info("rebirth requested", device_id=device_id, reason=why)
            await self.send(device_id, Command(cmd="rebirth", reason=why))

    async def pong(self, ping: Ping) -> None:
        """Answer a health check's ping, within budget."""
        mqtt = self.mqtt
        if mqtt is not None and self._budget.take():
            pong = Pong(nonce=ping.nonce, instance=self.instance)
            topic = service_topic(self.instance, ServiceTopic.PONG)
            await mqtt.publish(topic, pong.encode(), qos=1)

    async def echo_reply(self, device_id: str, echo: Echo) -> int | None:
        """Answer a device's `echo` at once, within budget; the reply's size, None if not sent."""
        if self.mqtt is None or not self._budget.take():
            return None
        return await self.send(device_id, EchoReply(seq=echo.seq, sent_ms=echo.sent_ms))
