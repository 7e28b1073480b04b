"""The edge service: one MQTT connection, the device registry, heartbeats and stats."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import structlog

from sciot_mqtt import __version__
from sciot_mqtt._tasks import Changes, finish, run_until_stopped
from sciot_mqtt.errors import ConnectionLostError, ErrorCode, ProtocolError
from sciot_mqtt.protocol import (
    Assign,
    Birth,
    Command,
    DetectionItem,
    DeviceAddress,
    DeviceState,
    DeviceTopic,
    ErrorReport,
    Heartbeat,
    InferenceCounts,
    InferRequest,
    InferResult,
    LocalTimings,
    Message,
    MessageRates,
    ServiceState,
    ServiceStats,
    ServiceTopic,
    SplitDecision,
    Tensor,
    device_filter,
    device_topic,
    is_valid_device_id,
    parse_topic,
    service_topic,
)
from sciot_mqtt.protocol.accounts import service_client_id
from sciot_mqtt.service.decisions import Decision, DecisionSettings, DeviceCostModel
from sciot_mqtt.service.recent import RecentRequests, Seen, digest
from sciot_mqtt.service.registry import DeviceRecord, Presence, Registry, Transition
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.transport import Backoff, BrokerAddress, Inbound, LastWill, MqttSession

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage
    from sciot_mqtt.service.inference import InferenceEngine

_MAX_REPLY_TOPIC_LEN = 512
_DRAIN_TIMEOUT_S = 2.0


@dataclass
class Counters:
    rx: int = 0
    tx: int = 0
    errors: int = 0
    # `infer` accounting: every request received ends in exactly one of the last five.
    infer: int = 0  # `infer` messages received
    answered: int = 0  # answered with a result (first answer)
    infer_rejected: int = 0  # answered on `error`
    duplicates: int = 0  # redeliveries: answered again from the recent cache, or dropped
    lost: int = 0  # result computed but the connection died before it was published
    running: int = 0  # accepted, tail under way


class Service:
    """Serves devices over one broker connection, reconnecting with backoff.

    Use as an async context manager: entering starts it (and returns at once; await
    `connected()` to know it is subscribed), leaving publishes `online: false` and stops.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        broker: BrokerAddress,
        *,
        packages: dict[str, ModelPackage] | None = None,
    ) -> None:
        """`packages` (model id -> prepared model) enable inference; without them the
        service runs the device lifecycle only and answers `infer` with `no_model`."""
        self.settings = settings
        self.packages = dict(packages or {})
        self.engine: InferenceEngine | None = None
        self.broker = broker
        self.instance = settings.instance
        self.registry = Registry(
            models=list(settings.models),
            hb_interval=settings.heartbeat_interval,
            instance=settings.instance,
            max_payload=settings.max_payload,
            missed_heartbeats=settings.missed_heartbeats,
            offline_grace=settings.offline_grace,
        )
        self.counters = Counters()
        # Tracebacks of handler failures; the testing kit fails a test that leaves any.
        self.internal_errors: list[str] = []
        self._log = structlog.get_logger("sciot.service").bind(instance=self.instance)
        self._started_wall = time.time()
        self._started = time.monotonic()
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._changes = Changes()
        self._runner: asyncio.Task[None] | None = None
        self._mqtt: MqttSession | None = None
        self._inferences: set[asyncio.Task[None]] = set()
        self._decisions: dict[str, SplitDecision] = {}
        self._recent: dict[str, RecentRequests] = {}  # registered devices only
        self.costs: dict[str, DeviceCostModel] = {}
        self.decision_settings = DecisionSettings(
            alpha=settings.ema_alpha,
            rel_margin=settings.hysteresis_rel,
            abs_margin_ms=settings.hysteresis_ms,
            window=settings.variance_window,
            cv_threshold=settings.variance_cv,
            probe_probability=settings.probe_probability,
            explore_every=settings.explore_every,
        )
        self.results_published = 0

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._runner is not None:
            raise RuntimeError("service already running")
        if self.packages:
            from sciot_mqtt.service.inference import InferenceEngine

            self.engine = InferenceEngine(
                self.packages,
                workers=self.settings.workers,
                max_pending=self.settings.max_pending,
            )
            await self.engine.__aenter__()
        self._runner = asyncio.create_task(self._supervise(), name=f"service-{self.instance}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Finish inferences under way, publish `online: false`, disconnect, end every task."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        await finish(runner, timeout=5)
        for task in list(self._inferences):
            task.cancel()
        await asyncio.gather(*self._inferences, return_exceptions=True)
        if self.engine is not None:
            await self.engine.__aexit__(None, None, None)
            self.engine = None

    @property
    def alive(self) -> bool:
        """True while the service runs (its supervising task has not ended)."""
        return self._runner is not None and not self._runner.done()

    async def connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds; it is checked after every change of the registry."""
        await self._changes.wait_until(predicate, timeout)

    async def _notify(self) -> None:
        await self._changes.notify()

    async def _supervise(self) -> None:
        # Capped at 2 s so devices offload again within a few seconds of a broker's return.
        backoff = Backoff(0.2, 2.0)
        while not self._stopping.is_set():
            try:
                await self._serve_once()
                backoff.reset()
            except ConnectionLostError as exc:
                self._connected.clear()
                delay = backoff.next()
                self._log.warning("broker connection lost", error=str(exc), retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _serve_once(self) -> None:
        will = ServiceState(online=False, instance=self.instance)
        async with MqttSession(
            self.broker,
            client_id=service_client_id(self.instance),
            will=LastWill(service_topic(self.instance, ServiceTopic.STATE), will.encode()),
            keepalive=self.settings.keepalive,
        ) as mqtt:
            self._mqtt = mqtt
            try:
                await self._publish_service_state(mqtt, online=True)
                # Our own retained assign and split first: the retained device states that
                # follow trigger rebirths, and their answers must find the recovered state.
                await mqtt.subscribe(
                    device_filter(DeviceTopic.ASSIGN),
                    device_filter(DeviceTopic.SPLIT),
                    device_filter(DeviceTopic.STATE),
                    device_filter(DeviceTopic.BIRTH),
                    device_filter(DeviceTopic.HB),
                    device_filter(DeviceTopic.INFER),
                    device_filter(DeviceTopic.TIMINGS),
                )
                self.registry.touch_all()
                self._connected.set()
                self._log.info("service online", broker=str(self.broker))
                await self._run_tasks(mqtt)
                if self._stopping.is_set():
                    await self._drain_inferences()
                    await self._publish_service_state(mqtt, online=False)
                    self._log.info("service offline")
            finally:
                self._mqtt = None
                self._connected.clear()

    async def _run_tasks(self, mqtt: MqttSession) -> None:
        await run_until_stopped(
            self._stopping,
            {
                "service-receive": self._receive(mqtt),
                "service-heartbeats": self._watch_heartbeats(mqtt),
                "service-stats": self._publish_stats(mqtt),
            },
        )

    async def _drain_inferences(self) -> None:
        """Let inferences under way publish their results before going offline."""
        if self._inferences:
            await asyncio.wait(set(self._inferences), timeout=_DRAIN_TIMEOUT_S)

    async def _publish_service_state(self, mqtt: MqttSession, *, online: bool) -> None:
        state = ServiceState(
            online=online,
            instance=self.instance,
            started_at=self._started_wall,
            version=__version__,
        )
        await mqtt.publish(
            service_topic(self.instance, ServiceTopic.STATE), state.encode(), qos=1, retain=True
        )

    # --- publishing -----------------------------------------------------------------------

    async def _send(self, mqtt: MqttSession, device_id: str, message: Message) -> int:
        payload = message.encode()
        await mqtt.publish(
            device_topic(device_id, message.TOPIC),  # type: ignore[arg-type]
            payload,
            qos=message.QOS,
            retain=message.RETAIN,
        )
        self.counters.tx += 1
        return len(payload)

    async def _reject(
        self, mqtt: MqttSession, device_id: str, kind: str, error: ProtocolError, seq: int | None
    ) -> None:
        self.counters.errors += 1
        if kind == DeviceTopic.INFER.value:
            self.counters.infer_rejected += 1
        self._log.warning(
            "message rejected",
            device_id=device_id[:80],
            topic=kind,
            code=error.code.value,
            reason=error.reason,
        )
        # An invalid id still names a topic we can answer on, unless it is absurdly long.
        if len(device_id) <= _MAX_REPLY_TOPIC_LEN:
            report = ErrorReport(code=error.code, reason=error.reason[:500], topic=kind, seq=seq)
            await self._send(mqtt, device_id, report)

    async def _request_rebirth(self, mqtt: MqttSession, device_id: str, why: str) -> None:
        if self.registry.should_request_rebirth(device_id):
            self._log.info("rebirth requested", device_id=device_id, reason=why)
            await self._send(mqtt, device_id, Command(cmd="rebirth", reason=why))

    # --- receiving ------------------------------------------------------------------------

    async def _receive(self, mqtt: MqttSession) -> None:
        async for message in mqtt.messages():
            self.counters.rx += 1
            try:
                await self._dispatch(mqtt, message)
            except ConnectionLostError:
                raise
            except Exception:
                # One device's message must never stop the service for the others.
                address = parse_topic(message.topic)
                device_id = address.device_id if isinstance(address, DeviceAddress) else "?"
                self._log.exception("handler failed", device_id=device_id, topic=message.topic)
                self.internal_errors.append(traceback.format_exc())
                if isinstance(address, DeviceAddress):
                    await self._reject(
                        mqtt,
                        device_id,
                        address.kind.value,
                        ProtocolError(ErrorCode.INTERNAL, "the service failed on this message"),
                        None,
                    )
            await self._notify()

    async def _dispatch(self, mqtt: MqttSession, message: Inbound) -> None:
        address = parse_topic(message.topic)
        if not isinstance(address, DeviceAddress):
            return
        device_id, kind = address.device_id, address.kind
        if kind is DeviceTopic.ASSIGN:
            if message.retain and is_valid_device_id(device_id):
                with contextlib.suppress(ProtocolError):
                    self.registry.on_recovered_assign(device_id, Assign.decode(message.payload))
            return  # live copies are our own publications echoed back
        if kind is DeviceTopic.SPLIT:
            if message.retain and is_valid_device_id(device_id) and message.payload:
                with contextlib.suppress(ProtocolError):
                    self._decisions.setdefault(device_id, SplitDecision.decode(message.payload))
            return
        if kind in (DeviceTopic.RESULT, DeviceTopic.CMD, DeviceTopic.ERROR):
            return
        if not is_valid_device_id(device_id):
            if message.payload or not message.retain:  # an empty retained message clears
                await self._reject(
                    mqtt,
                    device_id,
                    kind.value,
                    ProtocolError(ErrorCode.INVALID_DEVICE_ID, "device id is not a safe id"),
                    None,
                )
            return
        try:
            if kind is DeviceTopic.BIRTH:
                await self._on_birth(mqtt, device_id, Birth.decode(message.payload))
            elif kind is DeviceTopic.STATE:
                if message.retain and not message.payload:
                    return  # someone cleared the retained state; nothing to learn
                state = DeviceState.decode(message.payload)
                await self._on_state(mqtt, device_id, state, retained=message.retain)
            elif kind is DeviceTopic.HB:
                await self._on_heartbeat(mqtt, device_id, Heartbeat.decode(message.payload))
            elif kind is DeviceTopic.INFER:
                self.counters.infer += 1
                request = InferRequest.decode(message.payload, max_bytes=self.settings.max_payload)
                try:
                    await self._on_infer(
                        mqtt, device_id, request, time.perf_counter(), message.payload
                    )
                except ProtocolError as error:
                    await self._reject(mqtt, device_id, kind.value, error, request.seq)
            elif kind is DeviceTopic.TIMINGS:
                await self._on_timings(mqtt, device_id, LocalTimings.decode(message.payload))
        except ProtocolError as error:
            await self._reject(mqtt, device_id, kind.value, error, None)

    async def _on_birth(self, mqtt: MqttSession, device_id: str, birth: Birth) -> None:
        before = self.registry.get(device_id)
        if before is not None and before.birth is not None and before.birth.kind != birth.kind:
            # Another kind of hardware behind the same id: what we learnt of its timing is void.
            self.costs.pop(device_id, None)
        assign = self.registry.on_birth(device_id, birth)
        self._log.info(
            "device registered",
            device_id=device_id,
            session=birth.session,
            kind=birth.kind,
            model=assign.model,
        )
        await self._send(mqtt, device_id, assign)
        known = self._decisions.get(device_id)
        if known is not None and (known.model != assign.model or known.model not in self.packages):
            known = None  # a decision this service would not make now: leave it alone
        await self._decide(mqtt, device_id)
        if known is not None and self._decisions.get(device_id) is known:
            # Unchanged, so `_decide` sent nothing; send it again all the same: a broker that
            # crashed within its autosave interval may have lost the retained copy.
            await self._send(mqtt, device_id, known)

    async def _on_state(
        self, mqtt: MqttSession, device_id: str, state: DeviceState, *, retained: bool
    ) -> None:
        record_before = self.registry.get(device_id)
        late_before = record_before.late_wills_ignored if record_before else 0
        transition, rebirth = self.registry.on_state(device_id, state, retained=retained)
        record = self.registry.get(device_id)
        if record is not None and record.late_wills_ignored > late_before:
            self._log.info(
                "late will of an old session ignored",
                device_id=device_id,
                will_session=state.session,
                current_session=record.session,
            )
        self._log_transition(transition)
        if transition is not None:
            await self._decide(mqtt, device_id)
        if rebirth:
            await self._request_rebirth(mqtt, device_id, "service restarted")

    async def _on_heartbeat(self, mqtt: MqttSession, device_id: str, hb: Heartbeat) -> None:
        transition, rebirth = self.registry.on_heartbeat(device_id, hb)
        self._log_transition(transition)
        if transition is not None:
            await self._decide(mqtt, device_id)
        if rebirth:
            await self._request_rebirth(mqtt, device_id, "unknown session")

    # --- inference ------------------------------------------------------------------------

    def cost_model(self, device_id: str) -> DeviceCostModel | None:
        """The device's cost model for its assigned model (None without a loaded model)."""
        record = self.registry.get(device_id)
        package = self.packages.get(record.model) if record and record.model else None
        if package is None:
            return None
        model = self.costs.get(device_id)
        if model is None or model.bytes_at != [b.nbytes for b in package.boundaries]:
            model = DeviceCostModel(
                package.num_ops, [b.nbytes for b in package.boundaries], self.decision_settings
            )
            self.costs[device_id] = model
        return model

    def _next_decision(self, device_id: str, *, after_probe: bool) -> tuple[str, Decision] | None:
        record = self.registry.get(device_id)
        if record is None or record.model is None or record.model not in self.packages:
            return None
        package = self.packages[record.model]
        n = package.num_ops
        if record.presence is not Presence.ONLINE:
            return record.model, Decision(n, "local", None, f"device {record.presence.value}")
        if self.settings.split is not None:
            split = min(self.settings.split, n)
            mode: Literal["offload", "local"] = "local" if split == n else "offload"
            return record.model, Decision(split, mode, None, "pinned by the service")
        cost = self.cost_model(device_id)
        assert cost is not None
        edge_ms = self.engine.profiles[record.model].ms if self.engine else [0.0] * n
        queue_ms = self.engine.queue_ms if self.engine else 0.0
        return record.model, cost.decide(edge_ms, queue_ms, after_probe=after_probe)

    async def _decide(
        self, mqtt: MqttSession, device_id: str, *, after_probe: bool = False
    ) -> None:
        """Publish the device's retained split decision when split, mode or model change."""
        chosen = self._next_decision(device_id, after_probe=after_probe)
        if chosen is None:
            return
        model_id, decision = chosen
        previous = self._decisions.get(device_id)
        if previous is not None and (previous.split, previous.mode, previous.model) == (
            decision.split,
            decision.mode,
            model_id,
        ):
            return
        message = SplitDecision(
            decision=((previous.decision + 1) & 0xFFFFFFFF) if previous else 1,
            model=model_id,
            split=decision.split,
            mode=decision.mode,
            reason=decision.reason[:200],
            predicted_ms=decision.predicted_ms,
        )
        self._decisions[device_id] = message
        self._log.info(
            "split decision",
            device_id=device_id,
            split=message.split,
            mode=message.mode,
            predicted_ms=None if decision.predicted_ms is None else round(decision.predicted_ms, 2),
            reason=message.reason,
        )
        await self._send(mqtt, device_id, message)

    def _registered(self, device_id: str, session: int, model: str) -> DeviceRecord:
        record = self.registry.get(device_id)
        if record is None or not record.registered or record.session != session:
            raise ProtocolError(
                ErrorCode.NOT_REGISTERED, "no current birth for this session; send birth first"
            )
        if record.model != model:
            raise ProtocolError(
                ErrorCode.WRONG_MODEL, f"assigned model is {record.model!r}, not {model!r}"
            )
        return record

    async def _on_infer(
        self,
        mqtt: MqttSession,
        device_id: str,
        request: InferRequest,
        received: float,
        payload: bytes,
    ) -> None:
        """Validate now (errors answer at once), run the tail in an owned task."""
        self._registered(device_id, request.session, request.model)
        recent = self._recent.setdefault(device_id, RecentRequests())
        payload_digest = digest(payload)
        seen = recent.check(request.session, request.seq, payload_digest)
        if seen is Seen.CONFLICT:
            raise ProtocolError(
                ErrorCode.INVALID,
                f"seq {request.seq} of session {request.session} was used by another request",
            )
        if seen is not Seen.NEW:
            await self._on_duplicate(mqtt, device_id, request, recent.answer_of(request.seq))
            return
        package = self.packages.get(request.model)
        if package is None or self.engine is None:
            raise ProtocolError(ErrorCode.NO_MODEL, f"{request.model!r} is not loaded here")
        from sciot_mqtt.service.inference import validate_tensors

        tensors = validate_tensors(package, request.split, request.tensors)
        if len(request.device_ms) != request.split:
            raise ProtocolError(
                ErrorCode.INVALID,
                f"device_ms has {len(request.device_ms)} times for split {request.split}",
            )
        cost = self.cost_model(device_id)
        if cost is not None:
            cost.on_request(request.seq, request.split, request.device_ms, len(payload))
            if request.rtt_ms is not None and request.rtt_seq is not None:
                cost.on_round_trip(request.rtt_seq, request.rtt_ms)
        recent.start(request.session, request.seq, payload_digest)
        self.counters.running += 1
        task = asyncio.create_task(
            self._infer(mqtt, device_id, request, tensors, received),
            name=f"infer-{device_id}-{request.seq}",
        )
        self._inferences.add(task)
        task.add_done_callback(self._inference_done)

    async def _on_duplicate(
        self,
        mqtt: MqttSession,
        device_id: str,
        request: InferRequest,
        answer: InferResult | None,
    ) -> None:
        """A QoS 1 redelivery: never run twice; answer again with the very same result."""
        self.counters.duplicates += 1
        self._log.info(
            "duplicate infer",
            device_id=device_id,
            seq=request.seq,
            session=request.session,
            action="dropped, answer under way" if answer is None else "answered again",
        )
        if answer is not None:
            await self._send(mqtt, device_id, answer)

    def _inference_done(self, task: asyncio.Task[None]) -> None:
        self._inferences.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("inference task failed", task=task.get_name(), error=repr(exc))
            self.internal_errors.append(repr(exc))

    async def _infer(
        self,
        mqtt: MqttSession,
        device_id: str,
        request: InferRequest,
        tensors: Mapping[str, Any],
        received: float,
    ) -> None:
        try:
            await self._run_inference(mqtt, device_id, request, tensors, received)
        except asyncio.CancelledError:
            self.counters.lost += 1  # stopped before the answer went out
            raise
        finally:
            self.counters.running -= 1
        await self._notify()  # wait_until() callers may be waiting on the counters

    async def _run_inference(
        self,
        mqtt: MqttSession,
        device_id: str,
        request: InferRequest,
        tensors: Mapping[str, Any],
        received: float,
    ) -> None:
        assert self.engine is not None
        package = self.packages[request.model]
        recent = self._recent.get(device_id)
        try:
            outcome = await self.engine.run_tail(request.model, request.split, tensors)
        except ProtocolError as error:
            if recent is not None:  # overloaded: a redelivery may find room, so forget it
                recent.finish(request.session, request.seq, None)
            await self._reject(mqtt, device_id, DeviceTopic.INFER.value, error, request.seq)
            return
        except Exception:
            if recent is not None:
                recent.finish(request.session, request.seq, None)
            self._log.exception("tail failed", device_id=device_id, seq=request.seq)
            self.internal_errors.append(traceback.format_exc())
            await self._reject(
                mqtt,
                device_id,
                DeviceTopic.INFER.value,
                ProtocolError(ErrorCode.INTERNAL, "the service failed on this inference"),
                request.seq,
            )
            return
        spec = package.output
        output = outcome.output
        result = InferResult(
            seq=request.seq,
            model=request.model,
            split=request.split,
            detections=detections_of(package, output),
            output=Tensor(
                index=spec.index,
                dtype=spec.dtype,  # type: ignore[arg-type]
                shape=list(spec.shape),
                scale=spec.scale,
                zero_point=spec.zero_point,
                data=output.tobytes(),
            ),
            edge_ms=outcome.edge_op_ms,
            queue_ms=outcome.queue_s * 1000,
            service_ms=(time.perf_counter() - received) * 1000,
        )
        # Kept before publishing, so a redelivery after a lost connection gets this answer.
        if recent is not None:
            recent.finish(request.session, request.seq, result)
        try:
            sent = await self._send(mqtt, device_id, result)
        except ConnectionLostError:
            self.counters.lost += 1
            self._log.warning(
                "result lost with the connection", device_id=device_id, seq=request.seq
            )
            return
        self.results_published += 1
        self.counters.answered += 1
        cost = self.cost_model(device_id)
        if cost is not None:
            cost.on_result(request.seq, sent, result.service_ms)
        # The receive loop notices a lost connection and reconnects; nothing to do here.
        with contextlib.suppress(ConnectionLostError):
            await self._decide(mqtt, device_id)

    async def _on_timings(self, mqtt: MqttSession, device_id: str, timings: LocalTimings) -> None:
        record = self.registry.get(device_id)
        if record is None or record.session != timings.session or record.model != timings.model:
            return  # a run from before the current session says nothing about it now
        cost = self.cost_model(device_id)
        if cost is None:
            return
        if len(timings.device_ms) != cost.n_ops:
            raise ProtocolError(
                ErrorCode.INVALID,
                f"timings has {len(timings.device_ms)} times; {timings.model} has {cost.n_ops} ops",
            )
        cost.on_local_run(timings.device_ms, probe=timings.reason == "probe")
        if timings.rtt_ms is not None and timings.rtt_seq is not None:
            cost.on_round_trip(timings.rtt_seq, timings.rtt_ms)
        await self._decide(mqtt, device_id, after_probe=timings.reason == "probe")

    def _log_transition(self, transition: Transition | None) -> None:
        if transition is not None:
            self._log.info(
                "device presence",
                device_id=transition.device_id,
                before=transition.before.value,
                after=transition.after.value,
                why=transition.why,
            )

    # --- periodic -------------------------------------------------------------------------

    async def _watch_heartbeats(self, mqtt: MqttSession) -> None:
        period = min(0.25, self.settings.heartbeat_interval / 4)
        while True:
            await asyncio.sleep(period)
            transitions = self.registry.sweep()
            for transition in transitions:
                self._log_transition(transition)
                await self._decide(mqtt, transition.device_id)
            if transitions:
                await self._notify()

    async def _publish_stats(self, mqtt: MqttSession) -> None:
        interval = self.settings.stats_interval
        previous = Counters()
        while True:
            await asyncio.sleep(interval)
            now = Counters(self.counters.rx, self.counters.tx, self.counters.errors)
            stats = ServiceStats(
                instance=self.instance,
                uptime_s=time.monotonic() - self._started,
                devices=self.registry.counts(),
                rates=MessageRates(
                    rx=(now.rx - previous.rx) / interval,
                    tx=(now.tx - previous.tx) / interval,
                    errors=(now.errors - previous.errors) / interval,
                ),
                rx_total=now.rx,
                tx_total=now.tx,
                errors_total=now.errors,
                inference=InferenceCounts(
                    received=self.counters.infer,
                    answered=self.counters.answered,
                    rejected=self.counters.infer_rejected,
                    duplicates=self.counters.duplicates,
                    lost=self.counters.lost,
                    running=self.counters.running,
                ),
            )
            previous = now
            await mqtt.publish(
                service_topic(self.instance, ServiceTopic.STATS), stats.encode(), qos=0
            )


def detections_of(package: ModelPackage, output: object) -> list[DetectionItem]:
    """FOMO detections of an output; empty for models whose output is not a FOMO grid."""
    import numpy as np

    array = np.asarray(output)
    if array.ndim not in (3, 4) or array.shape[-1] < 2:
        return []
    return [
        DetectionItem(cls=d.class_id, x=d.x, y=d.y, score=min(1.0, max(0.0, float(d.score))))
        for d in package.decode(array)
    ]
