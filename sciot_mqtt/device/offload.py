"""A device's requests to the service that serves it: an `infer` out and its `result` or
`error` back (or a fallback, and why), the `timings` of device-only runs, the `echo` of a link
check and its `echo_reply`, and the round trip of the last request or echo, reported with the
next message.

The instance a request goes to is the one the device's `assign` names (topics.md, "Fleet").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from sciot_mqtt.errors import ConnectionLostError, ProtocolError
from sciot_mqtt.network.emulator import LinkEmulator
from sciot_mqtt.protocol import (
    DeviceTopic,
    Echo,
    EchoReply,
    ErrorReport,
    InferRequest,
    InferResult,
    LocalTimings,
    SplitDecision,
    device_topic,
)
from sciot_mqtt.protocol.linkcheck import EchoBudget
from sciot_mqtt.protocol.tensors import decode_tensor, encode_tensors
from sciot_mqtt.transport import MqttSession

if TYPE_CHECKING:
    from sciot_mqtt.device.inference import DeviceState
    from sciot_mqtt.device.report import DeviceSummary
    from sciot_mqtt.models import ModelPackage
    from sciot_mqtt.settings import DeviceSettings

__all__ = ["Fallback", "Reply", "ServiceChannel"]


class Fallback(Exception):
    """An offloaded inference that has to finish on the device; the message says why."""


Reply = tuple[InferResult | ErrorReport, int]


class ServiceChannel:
    """Requests in flight to the service, by sequence number, and where each went."""

    def __init__(
        self,
        device: DeviceState,
        *,
        link: LinkEmulator,
        summary: DeviceSummary,
        settings: DeviceSettings,
    ) -> None:
        self.device = device
        self.link = link
        self.summary = summary
        self.settings = settings
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._pending_to: dict[int, str] = {}  # the instance each request was sent to
        self._last_rtt: tuple[int, float] | None = None  # not yet reported to the service
        # Link checks (topics.md, rule 8): the byte credit of this connection's session, and
        # the one echo awaiting its reply.
        self.echo_budget = EchoBudget()
        self._echo_session: int | None = None
        self._echo_waiting: tuple[int, asyncio.Future[tuple[EchoReply, int]]] | None = None

    def on_result(self, result: InferResult, nbytes: int) -> None:
        future = self._pending.get(result.seq)
        if future is not None and not future.done():
            future.set_result((result, nbytes))

    def on_error(self, report: ErrorReport, nbytes: int) -> None:
        waiting = self._pending.get(report.seq) if report.seq is not None else None
        if report.topic == DeviceTopic.INFER.value and waiting and not waiting.done():
            waiting.set_result((report, nbytes))

    def on_echo_reply(self, reply: EchoReply, nbytes: int) -> None:
        waiting = self._echo_waiting
        if waiting is not None and waiting[0] == reply.seq and not waiting[1].done():
            waiting[1].set_result((reply, nbytes))

    def _budget(self) -> EchoBudget:
        """The echo budget of the current connection (a new session starts from nothing)."""
        if self._echo_session != self.device.session:
            self._echo_session = self.device.session
            self.echo_budget = EchoBudget()
        return self.echo_budget

    def _earn(self, user_bytes: int) -> None:
        self.summary.user_uplink_bytes += user_bytes
        self._budget().earn(user_bytes)

    def prepare_echo(self, seq: int, checked_bytes: int) -> Echo | None:
        """The echo to send beside local run `seq`, paid for; None when one is still
        awaiting its reply or the budget covers neither kind (`protocol/linkcheck.py`)."""
        if self._echo_waiting is not None or self.device.mqtt is None:
            return None
        budget = self._budget()
        small = Echo(seq=seq, session=self.device.session, sent_ms=0.0, padding=b"")
        large = small.model_copy(update={"padding": bytes(budget.large_padding(checked_bytes))})
        paid = budget.pay(len(small.encode()), len(large.encode()))
        if paid is None:
            return None
        # Awaiting its reply from now on: the next one waits for it (one at a time).
        self._echo_waiting = (seq, asyncio.get_running_loop().create_future())
        return large if paid else small

    async def echo(self, echo: Echo) -> float | None:
        """Send `echo` (from `prepare_echo`) and wait for its reply; its round trip (ms) is
        reported with the next message. None: unanswered within the result timeout."""
        mqtt = self.device.mqtt
        assignment = self.device.assignment
        waiting = self._echo_waiting
        if mqtt is None or assignment is None or waiting is None or waiting[0] != echo.seq:
            self._echo_waiting = None
            return None
        future = waiting[1]
        try:
            async with asyncio.timeout(self.settings.result_timeout):
                # Stamped as it leaves for the link (the payload's size does not change).
                payload = echo.model_copy(update={"sent_ms": _clock_ms()}).encode()
                self.summary.measure_uplink_bytes += len(payload)
                self.summary.echoes_sent += 1
                await self.link.uplink(len(payload))
                topic = device_topic(self.device.device_id, DeviceTopic.ECHO, assignment.instance)
                await mqtt.publish(topic, payload, qos=Echo.QOS)
                reply, reply_bytes = await future
                await self.link.downlink(reply_bytes)
        except (TimeoutError, ConnectionLostError):
            return None
        finally:
            self._echo_waiting = None
        rtt = max(0.0, _clock_ms() - reply.sent_ms)
        self.summary.echoes_answered += 1
        self._last_rtt = (echo.seq, rtt)
        return rtt

    def abandon(self, why: str, *, instance: str | None = None) -> None:
        """The device stopped offloading, or `instance` went away: requests in flight (to
        it) finish locally now."""
        for seq, future in self._pending.items():
            if instance is not None and self._pending_to.get(seq) != instance:
                continue
            if not future.done():
                future.set_exception(Fallback(why))

    def take_rtt(self) -> tuple[float | None, int | None]:
        """The round trip not yet reported, to go with the next message (reported once)."""
        last, self._last_rtt = self._last_rtt, None
        return (last[1], last[0]) if last else (None, None)

    async def offload(
        self,
        package: ModelPackage,
        seq: int,
        split: int,
        followed: SplitDecision | None,
        tensors: dict[str, np.ndarray],
        device_ms: list[float],
    ) -> tuple[np.ndarray, int, InferResult, float]:
        mqtt = self.device.mqtt
        assignment = self.device.assignment
        if mqtt is None or assignment is None:
            raise Fallback("disconnected")
        if self.device.mode != "offload":
            # The service went away while the head ran: nobody would fail this request's
            # future (that happens on the change to local), so it would wait for a timeout.
            raise Fallback("service unavailable")
        rtt_ms, rtt_seq = self.take_rtt()
        # The decision this split came from, not the latest: one may arrive during the head.
        request = InferRequest(
            seq=seq,
            session=self.device.session,
            model=package.model_id,
            split=split,
            decision=followed.decision if followed else None,
            tensors=encode_tensors(package.boundaries[split].tensors, tensors),
            device_ms=device_ms,
            rtt_ms=rtt_ms,
            rtt_seq=rtt_seq,
        )
        payload = request.encode()
        self._earn(len(payload))
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        # The instance serving the device now: the request goes to it alone (topics.md, "Fleet").
        self._pending_to[seq] = assignment.instance
        sent_at = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.result_timeout):
                await self.link.uplink(len(payload))
                await self._publish_request(mqtt, payload, future, assignment.instance)
                reply, reply_bytes = await future
                await self.link.downlink(reply_bytes)
        except TimeoutError:
            raise Fallback("timeout") from None
        except ConnectionLostError:
            raise Fallback("disconnected") from None
        finally:
            self._pending.pop(seq, None)
            self._pending_to.pop(seq, None)
        if isinstance(reply, ErrorReport):
            raise Fallback(f"error:{reply.code.value}")
        rtt = (time.perf_counter() - sent_at) * 1000
        self._last_rtt = (seq, rtt)
        try:
            output = decode_tensor(package.output, reply.output)
        except ProtocolError:
            raise Fallback("malformed result") from None
        return output, len(payload), reply, rtt

    async def _publish_request(
        self, mqtt: MqttSession, payload: bytes, future: asyncio.Future[Reply], instance: str
    ) -> None:
        """Publish an `infer` (QoS 1), giving up as soon as the device falls back.

        The PUBACK of a connection that just died never comes; waiting for it would hold the
        inference until the client's own timeout instead of finishing it locally at once.
        """
        self.summary.requests_sent += 1
        topic = device_topic(self.device.device_id, DeviceTopic.INFER, instance)
        publishing = asyncio.ensure_future(mqtt.publish(topic, payload, qos=1))
        try:
            waits: set[asyncio.Future[Any]] = {publishing, future}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not publishing.done():
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionLostError):
                    await publishing
        if publishing.done() and not publishing.cancelled():
            publishing.result()  # a failed publish raises ConnectionLostError here

    async def publish_timings(
        self,
        package: ModelPackage,
        seq: int,
        reason: str,
        device_ms: list[float],
        *,
        refresh: bool = False,
    ) -> None:
        mqtt = self.device.mqtt
        assignment = self.device.assignment
        if mqtt is None or assignment is None:
            return  # no instance serves it: nobody to tell
        # A refresh leaves the round trip to the next inference's message.
        rtt_ms, rtt_seq = (None, None) if refresh else self.take_rtt()
        timings = LocalTimings(
            seq=seq,
            session=self.device.session,
            model=package.model_id,
            reason="probe" if reason == "probe" else "pinned" if reason == "pinned" else "local",
            device_ms=device_ms,
            rtt_ms=rtt_ms,
            rtt_seq=rtt_seq,
        )
        payload = timings.encode()
        if refresh:
            self.summary.measure_uplink_bytes += len(payload)
        else:
            # A probe run in place is a local run the user needed anyway (`plan`).
            self._earn(len(payload))
        with contextlib.suppress(ConnectionLostError):
            await mqtt.publish(
                device_topic(self.device.device_id, DeviceTopic.TIMINGS, assignment.instance),
                payload,
                qos=1,
            )


def _clock_ms() -> float:
    """The device's clock for echoes (ms, monotonic, any origin)."""
    return time.monotonic() * 1000
