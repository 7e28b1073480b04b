"""The Python reference device: lifecycle, heartbeats, modes, local fallback, reconnects.

Its inferences run in `inference.py`; this module decides whether it may offload (the mode)
and keeps what the service told it (assignment, split decision).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import numpy as np
import structlog

from sciot_mqtt import __version__
from sciot_mqtt._supervisor import ConnectionSupervisor
from sciot_mqtt._tasks import Changes, run_until_stopped
from sciot_mqtt.device.compute import ComputeEmulator
from sciot_mqtt.device.emulation import Emulation
from sciot_mqtt.device.inference import InferenceRecord, InferenceRunner
from sciot_mqtt.device.report import DeviceSummary
from sciot_mqtt.device.services import ServiceWatch
from sciot_mqtt.errors import AccessDeniedError, ProtocolError
from sciot_mqtt.models.pool import ComputePool
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    U32_MAX,
    Assign,
    Birth,
    Command,
    DeviceAddress,
    DeviceMode,
    DeviceState,
    DeviceTopic,
    EchoReply,
    ErrorReport,
    Heartbeat,
    InferResult,
    ServiceAddress,
    ServiceState,
    ServiceTopic,
    SplitDecision,
    device_topic,
    parse_topic,
    service_filter,
)
from sciot_mqtt.protocol.accounts import device_client_id
from sciot_mqtt.settings import DeviceSettings
from sciot_mqtt.transport import Backoff, BrokerAddress, Inbound, LastWill, MqttSession

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

__all__ = ["Device", "DeviceSummary", "InferenceRecord", "initial_session"]


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

    def __init__(
        self,
        settings: DeviceSettings,
        broker: BrokerAddress | None = None,
        *,
        packages: dict[str, ModelPackage] | None = None,
        compute: ComputePool | None = None,
        emulation: Emulation | None = None,
    ) -> None:
        """`packages` (model id -> prepared model) are the models it can run; without them
        the device runs the lifecycle only. `compute` shares model threads with other
        devices (a swarm); by default the device has one thread of its own. `emulation`
        is the link and chip it stands in for (`Emulation.from_settings`); by default
        none: loopback at the host's real speed."""
        self.settings = settings
        self.packages = dict(packages or {})
        self.device_id = settings.id
        self.broker = broker or settings.broker_address()
        self.assignment: Assign | None = None
        self.decision: SplitDecision | None = None
        self.last_error: ErrorReport | None = None
        self._session = initial_session()
        self._services = ServiceWatch()
        # Whether the assignment may be offloaded on (topics.md, "Device modes"): only once an
        # assign answers this connection's birth, and again after a service restart or an
        # unanswered request. A retained assign is not enough: after a broker restart the
        # persisted service state may still say `online` for a service not back yet.
        self._assign_live = False
        self._connected = False
        self._mode: DeviceMode = "local"
        self._hb_seq = 0
        self._summary = DeviceSummary(self.device_id, self._session, "local", None)
        self._log = structlog.get_logger("sciot.device").bind(device_id=self.device_id)
        self._hb_wake = asyncio.Event()
        self._reannounce = asyncio.Event()
        self._changes = Changes()
        self._supervisor = ConnectionSupervisor(
            self._serve_once,
            backoff=Backoff(settings.reconnect_min, settings.reconnect_max),
            changes=self._changes,
            log=self._log,
            who="device",
            name=f"device-{self.device_id}",
            lost_event="broker unreachable",
            lost_level="info",
        )
        self._stopping = self._supervisor.stopping
        self._mqtt: MqttSession | None = None
        self._followed: SplitDecision | None = None  # the last decision that was not a probe
        # Emulated link and compute: what this device's network and chip would add.
        self.emulation = emulation or Emulation()
        self.link = self.emulation.link
        self._shared_compute = compute
        self._compute: ComputePool | None = None
        self._inference: InferenceRunner | None = None

    # --- public state ---------------------------------------------------------------------

    @property
    def mode(self) -> DeviceMode:
        return self._mode

    @property
    def mqtt(self) -> MqttSession | None:
        """The live connection, None while disconnected."""
        return self._mqtt

    @property
    def followed_decision(self) -> SplitDecision | None:
        """The last decision that was not a probe (what follows a probe run)."""
        return self._followed

    @property
    def session(self) -> int:
        return self._session

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def service_online(self) -> bool:
        """Whether the instance serving it (its assignment's) is online (topics.md, "Device
        modes"): another instance of a fleet being up does not serve this device."""
        assignment = self.assignment
        return assignment is not None and self._services.is_online(assignment.instance)

    @property
    def hb_interval(self) -> float:
        if self.assignment is not None:
            return self.assignment.hb_interval_s
        return self.settings.heartbeat_interval

    def summary(self) -> DeviceSummary:
        self._summary.session = self._session
        self._summary.mode_at_exit = self._mode
        self._summary.model = self.assignment.model if self.assignment else None
        return self._summary

    @property
    def failure(self) -> AccessDeniedError | None:
        """Why it stopped by itself: the broker refused its account."""
        return self._supervisor.failure

    async def ended(self) -> None:
        """Return when it stopped by itself (`failure` says why) or was stopped."""
        await self._supervisor.ended()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds; it is checked after every change of the device."""
        await self._changes.wait_until(predicate, timeout)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._supervisor.started:
            raise RuntimeError("device already running")
        if self.packages:
            # One thread of its own is enough: a device computes one inference at a time.
            self._compute = self._shared_compute or ComputePool(1, name="device")
            self._inference = InferenceRunner(
                self,
                packages=self.packages,
                compute=self._compute,
                emulation=self.emulation,
                summary=self._summary,
                settings=self.settings,
            )
        self._supervisor.start()
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
        await self._supervisor.stop()
        if self._inference is not None:
            await self._inference.close()
        if self._compute is not None and self._compute is not self._shared_compute:
            self._compute.close()
        self._compute = None

    async def crash(self) -> None:
        """Die as a device losing power does: no DISCONNECT and no `online: false`, so the
        broker's will and the missing heartbeats are all the service learns. In-flight
        inferences are abandoned. For tests and the swarm's churn."""
        if self._mqtt is not None:
            self._mqtt.sever()
        await self._supervisor.kill()
        if self._inference is not None:
            await self._inference.close()
        if self._compute is not None and self._compute is not self._shared_compute:
            self._compute.close()
        self._compute = None

    async def _changed_now(self) -> None:
        mode: DeviceMode = (
            "offload"
            if self._connected
            and self.assignment is not None
            and self._assign_live
            and self.service_online
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
            if mode == "local" and self._inference is not None:
                self._inference.channel.abandon("service unavailable")
        await self._changes.notify()

    async def _serve_once(self, backoff: Backoff) -> None:
        self._session = (self._session + 1) & U32_MAX
        will = DeviceState(online=False, session=self._session)
        async with MqttSession(
            self.broker,
            client_id=device_client_id(self.device_id),
            will=LastWill(device_topic(self.device_id, DeviceTopic.STATE), will.encode()),
            keepalive=self.settings.keepalive,
            # A broker that never acknowledges (amqtt has dropped a SUBSCRIBE now and then)
            # costs this long before the device reconnects.
            timeout=5.0,
        ) as mqtt:
            self._services.new_connection()
            self._assign_live = False  # until an assign answers this connection's birth
            self._reannounce.clear()  # this connection announces anyway
            try:
                await mqtt.subscribe(
                    *(
                        device_topic(self.device_id, kind)
                        for kind in (
                            DeviceTopic.ASSIGN,
                            DeviceTopic.SPLIT,
                            DeviceTopic.RESULT,
                            DeviceTopic.CMD,
                            DeviceTopic.ERROR,
                            DeviceTopic.ECHO_REPLY,
                        )
                    ),
                    service_filter(ServiceTopic.STATE),
                )
                await self._announce(mqtt)
                self._mqtt = mqtt
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
                self._mqtt = None
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
        await run_until_stopped(
            self._stopping,
            {
                f"{self.device_id}-receive": self._receive(mqtt),
                f"{self.device_id}-heartbeat": self._heartbeat(mqtt),
                f"{self.device_id}-reannounce": self._announce_on_request(mqtt),
            },
        )

    async def _announce_on_request(self, mqtt: MqttSession) -> None:
        while True:
            await self._reannounce.wait()
            self._reannounce.clear()
            await self._announce(mqtt)

    async def service_unresponsive(self) -> None:
        """No result in time: the service may hang with its connection open, so its will
        would come only after its keepalive. Work locally until it answers a new birth."""
        if not self._assign_live:
            return
        self._summary.unanswered += 1
        self._log.warning("no result in time; local until the service answers a birth")
        self._assign_live = False
        await self._changed_now()  # requests in flight finish locally now, not at their timeout
        self._reannounce.set()

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
                serving = self.assignment.instance if self.assignment else None
                if not message.payload:
                    self._services.cleared(address.instance)
                    state = None
                else:
                    state = ServiceState.decode(message.payload)
                    if self._services.on_state(address.instance, state) and (
                        address.instance == serving
                    ):
                        # Its instance (re)started: until it answers a birth (it asks for one).
                        self._assign_live = False
                if (state is None or not state.online) and self._inference is not None:
                    # Requests sent to an instance that is gone finish locally now, also
                    # those sent before a handover to another instance.
                    self._inference.channel.abandon(
                        "service unavailable", instance=address.instance
                    )
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
            if self.decision.mode != "probe":
                self._followed = self.decision
            self._summary.decisions += 1
        elif kind is DeviceTopic.RESULT:
            result = InferResult.decode(message.payload, max_bytes=self.settings.max_payload)
            if self._inference is not None:
                self._inference.channel.on_result(result, len(message.payload))
        elif kind is DeviceTopic.ECHO_REPLY:
            if self._inference is not None:
                reply = EchoReply.decode(message.payload)
                self._inference.channel.on_echo_reply(reply, len(message.payload))
        elif kind is DeviceTopic.CMD:
            command = Command.decode(message.payload)
            if command.cmd == "rebirth":
                self._log.info("rebirth", reason=command.reason)
                self._summary.rebirths += 1
                await self._announce(mqtt)
        elif kind is DeviceTopic.ERROR:
            self.last_error = ErrorReport.decode(message.payload)
            self._summary.errors_received += 1
            if self._inference is not None:
                self._inference.channel.on_error(self.last_error, len(message.payload))
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
        if assign.session == self._session:
            self._assign_live = True
        self._summary.assignments += 1
        if previous is None or previous.hb_interval_s != assign.hb_interval_s:
            self._hb_wake.set()
        self._log.info(
            "assigned", model=assign.model, session=assign.session, current_session=self._session
        )

    # --- inference ------------------------------------------------------------------------

    def _runner_or_fail(self) -> InferenceRunner:
        if self._inference is None:
            raise RuntimeError(
                f"device {self.device_id} cannot run inferences: it has no models, or has not "
                "been started (use it as an async context manager)"
            )
        return self._inference

    async def infer(self, data: np.ndarray, *, verify: bool = False) -> InferenceRecord:
        """One inference on ``data`` (an image of any size, or an array of the model's input
        shape): split as planned, offload, and finish locally if the edge fails."""
        return await self._runner_or_fail().infer(data, verify=verify)

    async def settle_measurements(self, timeout: float) -> None:
        """Wait (up to `timeout` s) for measurements under way to end (benchmarks)."""
        if self._inference is not None:
            await self._inference.settle(timeout)

    def plan(self, package: ModelPackage) -> tuple[int, str, SplitDecision | None]:
        """The split for the next inference, why, and the decision followed (N: local)."""
        return self._runner_or_fail().plan(package)

    def model_package(self) -> ModelPackage:
        """The assigned model's package, or before any assignment the first one carried."""
        return self._runner_or_fail().model_package()

    def compute_emulator(self, package: ModelPackage) -> ComputeEmulator:
        """How long each operator of `package` takes on the emulated chip."""
        return self.emulation.chip.emulator(package)
