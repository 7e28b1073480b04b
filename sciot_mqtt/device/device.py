"""The Python reference device: lifecycle, modes, local fallback, reconnects.

Its inferences run in `inference.py`; what it says of itself (state, birth, heartbeats) is
`presence.py`'s, and what the service tells it (assignment, split decision) is kept by
`inbox.py`; this module connects, reconnects, and decides whether it may offload (the mode).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import numpy as np
import structlog

from sciot_mqtt._supervisor import ConnectionSupervisor
from sciot_mqtt._tasks import Changes, run_until_stopped
from sciot_mqtt.device.compute import ComputeEmulator
from sciot_mqtt.device.emulation import Emulation
from sciot_mqtt.device.inbox import ServiceInbox
from sciot_mqtt.device.inference import InferenceRecord, InferenceRunner
from sciot_mqtt.device.presence import Presence, initial_session
from sciot_mqtt.device.report import DeviceSummary
from sciot_mqtt.errors import AccessDeniedError
from sciot_mqtt.models.pool import ComputePool
from sciot_mqtt.protocol import (
    U32_MAX,
    Assign,
    DeviceMode,
    ErrorReport,
    SplitDecision,
)
from sciot_mqtt.protocol.accounts import device_client_id
from sciot_mqtt.settings import DeviceSettings
from sciot_mqtt.transport import Backoff, BrokerAddress, MqttSession

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

__all__ = ["Device", "DeviceSummary", "InferenceRecord", "initial_session"]


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
        self._session = initial_session()
        self._connected = False
        self._mode: DeviceMode = "local"
        self._summary = DeviceSummary(self.device_id, self._session, "local", None)
        self._presence = Presence(settings, self._summary)
        self._log = structlog.get_logger("sciot.device").bind(device_id=self.device_id)
        self._inbox = ServiceInbox(
            self.device_id,
            models=settings.models,
            max_payload=settings.max_payload,
            summary=self._summary,
            log=self._log,
        )
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
    def assignment(self) -> Assign | None:
        """The model it runs and the instance serving it, as the service last assigned."""
        return self._inbox.assignment

    @property
    def decision(self) -> SplitDecision | None:
        """The service's split decision in force."""
        return self._inbox.decision

    @property
    def last_error(self) -> ErrorReport | None:
        """The service's last `error` report to it."""
        return self._inbox.last_error

    @property
    def mqtt(self) -> MqttSession | None:
        """The live connection, None while disconnected."""
        return self._mqtt

    @property
    def followed_decision(self) -> SplitDecision | None:
        """The last decision that was not a probe (what follows a probe run)."""
        return self._inbox.followed

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
        return self._inbox.service_online

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
        await self._release()

    async def crash(self) -> None:
        """Die as a device losing power does: no DISCONNECT and no `online: false`, so the
        broker's will and the missing heartbeats are all the service learns. In-flight
        inferences are abandoned. For tests and the swarm's churn."""
        if self._mqtt is not None:
            self._mqtt.sever()
        await self._supervisor.kill()
        await self._release()

    async def _release(self) -> None:
        """Close what the device runs inferences with (a shared compute pool stays open)."""
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
            and self._inbox.live
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
        async with MqttSession(
            self.broker,
            client_id=device_client_id(self.device_id),
            will=self._presence.will(self._session),
            keepalive=self.settings.keepalive,
            # A broker that never acknowledges (amqtt has dropped a SUBSCRIBE now and then)
            # costs this long before the device reconnects.
            timeout=5.0,
        ) as mqtt:
            self._inbox.new_connection()  # not live until an assign answers its birth
            self._reannounce.clear()  # this connection announces anyway
            try:
                await mqtt.subscribe(*self._inbox.topics())
                await self._presence.announce(mqtt, self._session)
                self._mqtt = mqtt
                self._connected = True
                self._summary.connects += 1
                backoff.reset()
                await self._changed_now()
                await self._run_tasks(mqtt)
                if self._stopping.is_set():
                    await self._presence.leave(mqtt, self._session)
            finally:
                if self._connected:
                    self._summary.disconnects += 1
                self._connected = False
                self._mqtt = None
                await self._changed_now()

    async def _run_tasks(self, mqtt: MqttSession) -> None:
        await run_until_stopped(
            self._stopping,
            {
                f"{self.device_id}-receive": self._receive(mqtt),
                f"{self.device_id}-heartbeat": self._presence.heartbeats(
                    mqtt, self._session, lambda: self._mode, lambda: self.hb_interval
                ),
                f"{self.device_id}-reannounce": self._announce_on_request(mqtt),
            },
        )

    async def _announce_on_request(self, mqtt: MqttSession) -> None:
        while True:
            await self._reannounce.wait()
            self._reannounce.clear()
            await self._presence.announce(mqtt, self._session)

    async def service_unresponsive(self) -> None:
        """No result in time: the service may hang with its connection open, so its will
        would come only after its keepalive. Work locally until it answers a new birth."""
        if not self._inbox.unanswered():
            return
        self._log.warning("no result in time; local until the service answers a birth")
        await self._changed_now()  # requests in flight finish locally now, not at their timeout
        self._reannounce.set()

    # --- receiving ------------------------------------------------------------------------

    async def _receive(self, mqtt: MqttSession) -> None:
        async for message in mqtt.messages():
            channel = self._inference.channel if self._inference is not None else None
            reaction = self._inbox.receive(message, session=self._session, channel=channel)
            if reaction == "announce":
                await self._presence.announce(mqtt, self._session)
            elif reaction == "heartbeat":
                self._presence.interval_changed()
            await self._changed_now()

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
