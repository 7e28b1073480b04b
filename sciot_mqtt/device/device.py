"""The Python reference device: lifecycle, heartbeats, local fallback and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Literal, Self

import structlog

from sciot_mqtt import __version__
from sciot_mqtt.errors import ConnectionLostError, ProtocolError
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    U32_MAX,
    Assign,
    Birth,
    Command,
    DeviceAddress,
    DeviceState,
    DeviceTopic,
    ErrorReport,
    Heartbeat,
    ServiceAddress,
    ServiceState,
    ServiceTopic,
    SplitDecision,
    device_topic,
    parse_topic,
    service_filter,
)
from sciot_mqtt.settings import DeviceSettings
from sciot_mqtt.transport import Backoff, BrokerAddress, Inbound, LastWill, MqttSession

Mode = Literal["offload", "local"]


@dataclass
class DeviceSummary:
    """What happened during a device's run; printed as one JSON line on exit."""

    device_id: str
    session: int
    mode: Mode
    model: str | None
    connects: int = 0
    disconnects: int = 0
    heartbeats: int = 0
    assignments: int = 0
    rebirths: int = 0
    fallbacks: int = 0
    resumes: int = 0
    decisions: int = 0
    decisions_rejected: int = 0
    errors_received: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def initial_session() -> int:
    """Seed the session counter from the clock so a restarted process still counts upward.

    Firmware keeps its counter in non-volatile storage instead (topics.md, "Sessions").
    """
    return int(time.time() * 1000) & U32_MAX


class Device:
    """A device that follows the contract; an async context manager.

    It runs whether or not a broker or service is reachable: `mode` is `offload` only while
    it is connected, assigned a model, and some service instance is online.
    """

    def __init__(self, settings: DeviceSettings, broker: BrokerAddress | None = None) -> None:
        self.settings = settings
        self.device_id = settings.id
        self.broker = broker or BrokerAddress(settings.host, settings.port)
        self.assignment: Assign | None = None
        self.decision: SplitDecision | None = None
        self.last_error: ErrorReport | None = None
        self._session = initial_session()
        self._services: dict[str, bool] = {}
        self._connected = False
        self._mode: Mode = "local"
        self._hb_seq = 0
        self._summary = DeviceSummary(self.device_id, self._session, "local", None)
        self._log = structlog.get_logger("sciot.device").bind(device_id=self.device_id)
        self._stopping = asyncio.Event()
        self._hb_wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: asyncio.Task[None] | None = None

    # --- public state ---------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def session(self) -> int:
        return self._session

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def service_online(self) -> bool:
        return any(self._services.values())

    @property
    def hb_interval(self) -> float:
        if self.assignment is not None:
            return self.assignment.hb_interval_s
        return self.settings.heartbeat_interval

    def summary(self) -> DeviceSummary:
        self._summary.session = self._session
        self._summary.mode = self._mode
        self._summary.model = self.assignment.model if self.assignment else None
        return self._summary

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds; it is checked after every change of the device."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._runner is not None:
            raise RuntimeError("device already running")
        self._runner = asyncio.create_task(self._supervise(), name=f"device-{self.device_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Leave cleanly: retained `online: false`, then disconnect."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(runner), 5)
        except TimeoutError:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    async def _changed_now(self) -> None:
        mode: Mode = (
            "offload"
            if self._connected and self.assignment is not None and self.service_online
            else "local"
        )
        if mode != self._mode:
            if mode == "local":
                if not self._stopping.is_set():  # leaving on purpose is not a fallback
                    self._summary.fallbacks += 1
            else:
                self._summary.resumes += 1
            self._log.info("mode", mode=mode, connected=self._connected)
            self._mode = mode
        async with self._changed:
            self._changed.notify_all()

    async def _supervise(self) -> None:
        backoff = Backoff(self.settings.reconnect_min, self.settings.reconnect_max)
        while not self._stopping.is_set():
            try:
                await self._serve_once(backoff)
            except ConnectionLostError as exc:
                delay = backoff.next()
                self._log.info("broker unreachable", error=str(exc), retry_in_s=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _serve_once(self, backoff: Backoff) -> None:
        self._session = (self._session + 1) & U32_MAX
        will = DeviceState(online=False, session=self._session)
        async with MqttSession(
            self.broker,
            client_id=f"sciot-dev-{self.device_id}",
            will=LastWill(device_topic(self.device_id, DeviceTopic.STATE), will.encode()),
            keepalive=self.settings.keepalive,
        ) as mqtt:
            self._services.clear()
            try:
                await mqtt.subscribe(
                    *(
                        device_topic(self.device_id, kind)
                        for kind in (
                            DeviceTopic.ASSIGN,
                            DeviceTopic.SPLIT,
                            DeviceTopic.CMD,
                            DeviceTopic.ERROR,
                        )
                    ),
                    service_filter(ServiceTopic.STATE),
                )
                await self._announce(mqtt)
                self._connected = True
                self._summary.connects += 1
                backoff.reset()
                await self._changed_now()
                await self._run_tasks(mqtt)
                if self._stopping.is_set():
                    await mqtt.publish(
                        device_topic(self.device_id, DeviceTopic.STATE),
                        will.encode(),
                        qos=1,
                        retain=True,
                    )
            finally:
                if self._connected:
                    self._summary.disconnects += 1
                self._connected = False
                await self._changed_now()

    async def _announce(self, mqtt: MqttSession) -> None:
        """`state` online, then `birth`: the order topics.md fixes."""
        state = DeviceState(online=True, session=self._session)
        await mqtt.publish(
            device_topic(self.device_id, DeviceTopic.STATE), state.encode(), qos=1, retain=True
        )
        birth = Birth(
            protocol=PROTOCOL_VERSION,
            session=self._session,
            kind=self.settings.kind,
            models=list(self.settings.models),
            max_payload=self.settings.max_payload,
            fw=f"sciot-mqtt {__version__}",
        )
        await mqtt.publish(device_topic(self.device_id, DeviceTopic.BIRTH), birth.encode(), qos=1)

    async def _run_tasks(self, mqtt: MqttSession) -> None:
        tasks = [
            asyncio.create_task(self._receive(mqtt), name=f"{self.device_id}-receive"),
            asyncio.create_task(self._heartbeat(mqtt), name=f"{self.device_id}-heartbeat"),
        ]
        stop = asyncio.create_task(self._stopping.wait(), name=f"{self.device_id}-stop")
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, stop):
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
        for task in done:
            if task is not stop and (exc := task.exception()) is not None:
                raise exc

    async def _heartbeat(self, mqtt: MqttSession) -> None:
        while True:
            hb = Heartbeat(seq=self._hb_seq, session=self._session, mode=self._mode)
            await mqtt.publish(device_topic(self.device_id, DeviceTopic.HB), hb.encode(), qos=0)
            self._hb_seq = (self._hb_seq + 1) & U32_MAX
            self._summary.heartbeats += 1
            self._hb_wake.clear()
            # A new assignment may shorten the interval: wake up for it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hb_wake.wait(), self.hb_interval)

    # --- receiving ------------------------------------------------------------------------

    async def _receive(self, mqtt: MqttSession) -> None:
        async for message in mqtt.messages():
            try:
                await self._dispatch(mqtt, message)
            except ProtocolError as error:
                self._log.warning(
                    "message from service rejected",
                    topic=message.topic,
                    code=error.code.value,
                    reason=error.reason,
                )
                if parse_topic(message.topic) == DeviceAddress(self.device_id, DeviceTopic.SPLIT):
                    self._summary.decisions_rejected += 1
            await self._changed_now()

    async def _dispatch(self, mqtt: MqttSession, message: Inbound) -> None:
        address = parse_topic(message.topic)
        if isinstance(address, ServiceAddress):
            if address.kind is ServiceTopic.STATE:
                if not message.payload:
                    self._services.pop(address.instance, None)
                else:
                    self._services[address.instance] = ServiceState.decode(message.payload).online
            return
        if not isinstance(address, DeviceAddress) or address.device_id != self.device_id:
            return
        kind = address.kind
        if kind is DeviceTopic.ASSIGN:
            if not message.payload:
                self.assignment = None
                return
            await self._on_assign(Assign.decode(message.payload))
        elif kind is DeviceTopic.SPLIT:
            if not message.payload:
                self.decision = None
                return
            self.decision = SplitDecision.decode(message.payload)
            self._summary.decisions += 1
        elif kind is DeviceTopic.CMD:
            command = Command.decode(message.payload)
            if command.cmd == "rebirth":
                self._log.info("rebirth", reason=command.reason)
                self._summary.rebirths += 1
                await self._announce(mqtt)
        elif kind is DeviceTopic.ERROR:
            self.last_error = ErrorReport.decode(message.payload)
            self._summary.errors_received += 1
            self._log.warning(
                "service rejected a message",
                code=self.last_error.code.value,
                topic=self.last_error.topic,
                reason=self.last_error.reason,
            )

    async def _on_assign(self, assign: Assign) -> None:
        if assign.model not in self.settings.models:
            self._log.warning("assignment of a model this device lacks", model=assign.model)
            return
        previous = self.assignment
        self.assignment = assign
        self._summary.assignments += 1
        if previous is None or previous.hb_interval_s != assign.hb_interval_s:
            self._hb_wake.set()
        self._log.info(
            "assigned", model=assign.model, session=assign.session, current_session=self._session
        )
