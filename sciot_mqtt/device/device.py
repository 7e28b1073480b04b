"""The Python reference device: lifecycle, heartbeats, local fallback and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import structlog

from sciot_mqtt import __version__
from sciot_mqtt._tasks import Changes, finish, run_until_stopped
from sciot_mqtt.device.emulation import ComputeEmulator, LinkEmulator, load_compute_profile
from sciot_mqtt.errors import ConnectionLostError, ProtocolError
from sciot_mqtt.models.pool import ComputePool
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    U32_MAX,
    Assign,
    Birth,
    Command,
    DetectionItem,
    DeviceAddress,
    DeviceState,
    DeviceTopic,
    ErrorReport,
    Heartbeat,
    InferRequest,
    InferResult,
    LocalTimings,
    ServiceAddress,
    ServiceState,
    ServiceTopic,
    SplitDecision,
    Tensor,
    device_topic,
    parse_topic,
    service_filter,
)
from sciot_mqtt.protocol.accounts import device_client_id
from sciot_mqtt.settings import DeviceSettings
from sciot_mqtt.transport import Backoff, BrokerAddress, Inbound, LastWill, MqttSession

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage
Mode = Literal["offload", "local"]
Path_ = Literal["offload", "local", "fallback"]


class _Fallback(Exception):
    """An offloaded inference that has to finish on the device; the message says why."""


@dataclass(frozen=True, slots=True)
class InferenceRecord:
    """One inference as the device saw it."""

    seq: int
    split: int
    path: Path_  # offload: the service answered; local: planned; fallback: finished locally
    reason: str
    head_ms: float  # operators run on the device before sending (all of them when local)
    total_ms: float  # input to result, on the device's clock
    sent_bytes: int
    output: bytes
    detections: tuple[tuple[int, int, int, float], ...]
    matches_local: bool | None = None
    rtt_ms: float | None = None  # publish of `infer` to arrival of `result` (offload only)
    decision_reason: str | None = None  # why the service chose this split (None if pinned)
    edge_ms: float | None = None  # the service's tail compute, from the result
    service_ms: float | None = None  # the service's receive to publish, from the result


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
    unanswered: int = 0  # result timeouts that made the device stop offloading
    fallbacks: int = 0
    resumes: int = 0
    decisions: int = 0
    decisions_rejected: int = 0
    errors_received: int = 0
    inferences: int = 0
    offloaded: int = 0
    local: int = 0
    fallbacks_local: int = 0
    # Accounting of offloads: every `infer` published ends as answered or finished locally.
    requests_sent: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)

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

    def __init__(
        self,
        settings: DeviceSettings,
        broker: BrokerAddress | None = None,
        *,
        packages: dict[str, ModelPackage] | None = None,
        compute: ComputePool | None = None,
    ) -> None:
        """`packages` (model id -> prepared model) are the models it can run; without them
        the device runs the lifecycle only. `compute` shares model threads with other
        devices (a swarm); by default the device has one thread of its own."""
        self.settings = settings
        self.packages = dict(packages or {})
        self.device_id = settings.id
        self.broker = broker or settings.broker_address()
        self.assignment: Assign | None = None
        self.decision: SplitDecision | None = None
        self.last_error: ErrorReport | None = None
        self._session = initial_session()
        self._services: dict[str, bool] = {}
        self._service_starts: dict[str, float | None] = {}
        # Whether the assignment may be offloaded on (topics.md, "Device modes"): only once an
        # assign answers this connection's birth, and again after a service restart or an
        # unanswered request. A retained assign is not enough: after a broker restart the
        # persisted service state may still say `online` for a service not back yet.
        self._assign_live = False
        self._connected = False
        self._mode: Mode = "local"
        self._hb_seq = 0
        self._summary = DeviceSummary(self.device_id, self._session, "local", None)
        self._log = structlog.get_logger("sciot.device").bind(device_id=self.device_id)
        self._stopping = asyncio.Event()
        self._hb_wake = asyncio.Event()
        self._reannounce = asyncio.Event()
        self._changes = Changes()
        self._runner: asyncio.Task[None] | None = None
        self._mqtt: MqttSession | None = None
        self._pending: dict[int, asyncio.Future[tuple[InferResult | ErrorReport, int]]] = {}
        # Emulated link and compute: what this device's network and chip would add.
        self.link = LinkEmulator(settings.network, seed=settings.emulation_seed)
        self._emulators: dict[str, ComputeEmulator] = {}
        self._infer_seq = 0
        self._last_rtt: tuple[int, float] | None = None  # not yet reported to the service
        self._probed: int | None = None  # decision number of the probe already run
        self._followed: SplitDecision | None = None  # the last decision that was not a probe
        self._shared_compute = compute
        self._compute: ComputePool | None = None

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
        await self._changes.wait_until(predicate, timeout)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._runner is not None:
            raise RuntimeError("device already running")
        if self.packages:
            # One thread of its own is enough: a device computes one inference at a time.
            self._compute = self._shared_compute or ComputePool(1, name="device")
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
        await finish(runner, timeout=5)
        if self._compute is not None and self._compute is not self._shared_compute:
            self._compute.close()
        self._compute = None

    async def crash(self) -> None:
        """Die as a device losing power does: no DISCONNECT and no `online: false`, so the
        broker's will and the missing heartbeats are all the service learns. In-flight
        inferences are abandoned. For tests and the swarm's churn."""
        if self._mqtt is not None:
            self._mqtt.sever()
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionLostError):
                await runner
        self._stopping.set()
        if self._compute is not None and self._compute is not self._shared_compute:
            self._compute.close()
        self._compute = None

    async def _changed_now(self) -> None:
        mode: Mode = (
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
            if mode == "local":
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(_Fallback("service unavailable"))
        await self._changes.notify()

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
            client_id=device_client_id(self.device_id),
            will=LastWill(device_topic(self.device_id, DeviceTopic.STATE), will.encode()),
            keepalive=self.settings.keepalive,
            # A broker that never acknowledges (amqtt has dropped a SUBSCRIBE now and then)
            # costs this long before the device reconnects.
            timeout=5.0,
        ) as mqtt:
            self._services.clear()
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

    async def _service_unresponsive(self) -> None:
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
                if not message.payload:
                    self._services.pop(address.instance, None)
                    return
                state = ServiceState.decode(message.payload)
                seen = address.instance in self._services  # earlier on this connection
                was_online = self._services.get(address.instance, False)
                restarted = self._service_starts.get(address.instance) != state.started_at
                if state.online and seen and (not was_online or restarted):
                    # A service (re)starting knows nothing of this connection yet: wait for
                    # the answer to a birth (it asks for one) before offloading again.
                    self._assign_live = False
                self._services[address.instance] = state.online
                if state.online:
                    self._service_starts[address.instance] = state.started_at
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
            future = self._pending.get(result.seq)
            if future is not None and not future.done():
                future.set_result((result, len(message.payload)))
        elif kind is DeviceTopic.CMD:
            command = Command.decode(message.payload)
            if command.cmd == "rebirth":
                self._log.info("rebirth", reason=command.reason)
                self._summary.rebirths += 1
                await self._announce(mqtt)
        elif kind is DeviceTopic.ERROR:
            self.last_error = ErrorReport.decode(message.payload)
            self._summary.errors_received += 1
            seq = self.last_error.seq
            waiting = self._pending.get(seq) if seq is not None else None
            if self.last_error.topic == DeviceTopic.INFER.value and waiting and not waiting.done():
                waiting.set_result((self.last_error, len(message.payload)))
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

    def model_package(self) -> ModelPackage:
        """The assigned model's package, or before any assignment the first one carried."""
        model = self.assignment.model if self.assignment else self.settings.models[0]
        package = self.packages.get(model)
        if package is None:
            raise RuntimeError(f"device {self.device_id} has no prepared model {model!r}")
        return package

    def compute_emulator(self, package: ModelPackage) -> ComputeEmulator:
        """How long each operator takes on the emulated chip (`host`: as measured)."""
        emulator = self._emulators.get(package.sha256)
        if emulator is None:
            profile = load_compute_profile(self.settings.profile, package)
            emulator = ComputeEmulator(profile, seed=self.settings.emulation_seed)
            self._emulators[package.sha256] = emulator
        return emulator

    async def _emulate_wait(self, target_s: float, measured_s: float) -> None:
        """Make compute that took `measured_s` take `target_s`, as on the emulated chip.

        Awaited on the event loop, not slept on a compute thread, so that devices sharing
        a `ComputePool` never hold a thread while they stand in for a slower chip."""
        if target_s > measured_s:
            await asyncio.sleep(target_s - measured_s)

    async def _run_head(
        self, package: ModelPackage, emulator: ComputeEmulator, split: int, x: np.ndarray
    ) -> tuple[dict[str, np.ndarray], list[float]]:
        """Operators [0, split), taking the profile's time for each."""
        compute = self._compute_pool()
        tensors, measured = await compute.run(lambda: compute.runner(package).run_head(split, x))
        target = [emulator.op_seconds(i, t) for i, t in enumerate(measured)]
        await self._emulate_wait(sum(target), sum(measured))
        return tensors, target

    async def _run_tail(
        self,
        package: ModelPackage,
        emulator: ComputeEmulator,
        split: int,
        tensors: dict[str, np.ndarray],
    ) -> np.ndarray:
        compute = self._compute_pool()

        def tail() -> tuple[np.ndarray, float]:
            started = time.perf_counter()
            output = compute.runner(package).run_tail(split, tensors)
            return output, time.perf_counter() - started

        output, measured = await compute.run(tail)
        target = sum(emulator.op_seconds(i, 0.0) for i in range(split, package.num_ops))
        await self._emulate_wait(target, measured)
        return output

    def _compute_pool(self) -> ComputePool:
        if self._compute is None:
            raise RuntimeError("the device has no models to run")
        return self._compute

    def plan(self, package: ModelPackage) -> tuple[int, str, SplitDecision | None]:
        """The split for the next inference, why, and the decision followed (N: local)."""
        n = package.num_ops
        if self._mode != "offload":
            return n, "local", None
        if self.settings.split is not None:
            return min(self.settings.split, n), "pinned", None
        decision = self.decision
        if decision is not None and decision.mode == "probe":
            if decision.decision != self._probed:
                return n, "probe", decision
            decision = self._followed  # one probe per probe decision; then as before
        if decision is None or decision.model != package.model_id:
            return n, "local", None
        if decision.mode == "local" or decision.split >= n:
            return n, "local", decision
        return decision.split, "decision", decision

    async def infer(self, image: np.ndarray, *, verify: bool = False) -> InferenceRecord:
        """One inference: split as planned, offload, and finish locally if the edge fails."""
        compute = self._compute_pool()
        package = self.model_package()
        x = package.quantize_input(image)
        seq = self._infer_seq
        self._infer_seq = (self._infer_seq + 1) & U32_MAX
        split, reason, followed = self.plan(package)
        if reason == "probe" and followed is not None:
            self._probed = followed.decision
        started = time.perf_counter()
        emulator = self.compute_emulator(package)
        tensors, op_seconds = await self._run_head(package, emulator, split, x)
        device_ms = [t * 1000 for t in op_seconds]
        sent = 0
        rtt_ms = None
        reply: InferResult | None = None
        if split == package.num_ops:
            output = tensors[package.output.name]
            path: Path_ = "local"
            await self._publish_timings(package, seq, reason, device_ms, output)
        else:
            try:
                output, sent, reply, rtt_ms = await self._offload(
                    package, seq, split, followed, tensors, device_ms
                )
                path, reason = "offload", "answered"
            except _Fallback as why:
                output = await self._run_tail(package, emulator, split, tensors)
                path, reason = "fallback", str(why)
                if reason == "timeout":
                    await self._service_unresponsive()
        total_ms = (time.perf_counter() - started) * 1000
        output = np.asarray(output)
        matches = None
        if verify:
            whole = await compute.run(lambda: compute.runner(package).run_whole(x))
            matches = bool(np.asarray(whole).tobytes() == output.tobytes())
        self._count(path, reason)
        return InferenceRecord(
            seq=seq,
            split=split,
            path=path,
            reason=reason,
            head_ms=sum(device_ms),
            total_ms=total_ms,
            sent_bytes=sent,
            output=output.tobytes(),
            detections=tuple(
                (d.class_id, d.x, d.y, float(d.score)) for d in package.decode(output)
            ),
            matches_local=matches,
            rtt_ms=rtt_ms,
            decision_reason=followed.reason if followed else None,
            edge_ms=sum(reply.edge_ms) if reply else None,
            service_ms=reply.service_ms if reply else None,
        )

    def _count(self, path: Path_, reason: str) -> None:
        self._summary.inferences += 1
        if path == "offload":
            self._summary.offloaded += 1
        elif path == "local":
            self._summary.local += 1
        else:
            self._summary.fallbacks_local += 1
            reasons = self._summary.fallback_reasons
            reasons[reason] = reasons.get(reason, 0) + 1

    async def _offload(
        self,
        package: ModelPackage,
        seq: int,
        split: int,
        followed: SplitDecision | None,
        tensors: dict[str, np.ndarray],
        device_ms: list[float],
    ) -> tuple[np.ndarray, int, InferResult, float]:
        mqtt = self._mqtt
        if mqtt is None or self.assignment is None:
            raise _Fallback("disconnected")
        if self._mode != "offload":
            # The service went away while the head ran: nobody would fail this request's
            # future (that happens on the change to local), so it would wait for a timeout.
            raise _Fallback("service unavailable")
        specs = package.boundaries[split].tensors
        # The decision this split came from, not the latest: one may arrive during the head.
        request = InferRequest(
            seq=seq,
            session=self._session,
            model=package.model_id,
            split=split,
            decision=followed.decision if followed else None,
            tensors=[
                Tensor(
                    index=spec.index,
                    dtype=spec.dtype,  # type: ignore[arg-type]
                    shape=list(spec.shape),
                    scale=spec.scale,
                    zero_point=spec.zero_point,
                    data=np.ascontiguousarray(tensors[spec.name]).tobytes(),
                )
                for spec in specs
            ],
            device_ms=device_ms,
            rtt_ms=self._last_rtt[1] if self._last_rtt else None,
            rtt_seq=self._last_rtt[0] if self._last_rtt else None,
        )
        self._last_rtt = None
        payload = request.encode()
        future: asyncio.Future[tuple[InferResult | ErrorReport, int]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[seq] = future
        sent_at = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.result_timeout):
                await self.link.uplink(len(payload))
                await self._publish_request(mqtt, payload, future)
                reply, reply_bytes = await future
                await self.link.downlink(reply_bytes)
        except TimeoutError:
            raise _Fallback("timeout") from None
        except ConnectionLostError:
            raise _Fallback("disconnected") from None
        finally:
            self._pending.pop(seq, None)
        if isinstance(reply, ErrorReport):
            raise _Fallback(f"error:{reply.code.value}")
        rtt_ms = (time.perf_counter() - sent_at) * 1000
        self._last_rtt = (seq, rtt_ms)
        spec = package.output
        if reply.output.data and len(reply.output.data) == spec.nbytes:
            output = np.frombuffer(reply.output.data, dtype=spec.np_dtype).reshape(spec.shape)
        else:
            raise _Fallback("malformed result")
        return output, len(payload), reply, rtt_ms

    async def _publish_request(
        self,
        mqtt: MqttSession,
        payload: bytes,
        future: asyncio.Future[tuple[InferResult | ErrorReport, int]],
    ) -> None:
        """Publish an `infer` (QoS 1), giving up as soon as the device falls back.

        The PUBACK of a connection that just died never comes; waiting for it would hold the
        inference until the client's own timeout instead of finishing it locally at once.
        """
        self._summary.requests_sent += 1
        publishing = asyncio.ensure_future(
            mqtt.publish(device_topic(self.device_id, DeviceTopic.INFER), payload, qos=1)
        )
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

    async def _publish_timings(
        self,
        package: ModelPackage,
        seq: int,
        reason: str,
        device_ms: list[float],
        output: np.ndarray,
    ) -> None:
        mqtt = self._mqtt
        if mqtt is None:
            return
        timings = LocalTimings(
            seq=seq,
            session=self._session,
            model=package.model_id,
            reason=reason if reason in ("probe", "pinned") else "local",  # type: ignore[arg-type]
            device_ms=device_ms,
            detections=[
                DetectionItem(cls=d.class_id, x=d.x, y=d.y, score=min(1.0, float(d.score)))
                for d in package.decode(output)
            ],
            rtt_ms=self._last_rtt[1] if self._last_rtt else None,
            rtt_seq=self._last_rtt[0] if self._last_rtt else None,
        )
        self._last_rtt = None
        with contextlib.suppress(ConnectionLostError):
            await mqtt.publish(
                device_topic(self.device_id, DeviceTopic.TIMINGS), timings.encode(), qos=1
            )
