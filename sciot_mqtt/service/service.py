"""The edge service: one MQTT connection, the device lifecycle, decisions and stats.

It dispatches what arrives: lifecycle messages to the registry, `infer` to the inference
pipeline (`pipeline.py`), timing reports to the device's cost model; and publishes what they
decide (`assign`, `split`, `cmd`, `error`, `stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import structlog

from sciot_mqtt import __version__
from sciot_mqtt._supervisor import ConnectionSupervisor
from sciot_mqtt._tasks import Changes, run_until_stopped
from sciot_mqtt.errors import AccessDeniedError, ConnectionLostError, ErrorCode, ProtocolError
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    Assign,
    Birth,
    DeviceAddress,
    DeviceState,
    DeviceTopic,
    Heartbeat,
    LocalTimings,
    Message,
    Ping,
    ServiceAddress,
    ServiceLoad,
    ServiceState,
    ServiceTopic,
    device_filter,
    is_valid_device_id,
    parse_topic,
    service_filter,
    service_topic,
)
from sciot_mqtt.protocol.accounts import RESERVED_PREFIX, service_client_id
from sciot_mqtt.service.coordinator import FleetCoordinator
from sciot_mqtt.service.explain import Explainer
from sciot_mqtt.service.hearing import HearingCheck
from sciot_mqtt.service.limits import TokenBucket
from sciot_mqtt.service.outbox import MqttOutbox
from sciot_mqtt.service.pipeline import InferencePipeline
from sciot_mqtt.service.planner import SplitPlanner
from sciot_mqtt.service.registry import DeviceRecord, Reaction, Registry, Transition
from sciot_mqtt.service.stats import Counters, LatencyWindow, StatsReporter
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.transport import Backoff, BrokerAddress, Inbound, LastWill, MqttSession

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage
    from sciot_mqtt.service.engine import InferenceEngine

_DRAIN_TIMEOUT_S = 2.0
_EXPLAIN_TICK_S = 0.5  # a new decision's explanation goes out within this


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
            max_devices=settings.max_devices,
            evict_after=settings.evict_after,
        )
        self.hearing = HearingCheck(settings.stats_interval)
        self.deaf_reconnects = 0  # times it found itself deaf and reconnected
        # Replies any client can provoke (rebirths, errors) share one budget.
        self.replies = TokenBucket(settings.reply_rate, 2 * settings.reply_rate)
        self.counters = Counters()
        self._log = structlog.get_logger("sciot.service").bind(instance=self.instance)
        self.outbox = MqttOutbox(
            self.instance,
            registry=self.registry,
            counters=self.counters,
            budget=self.replies,
            log=self._log,
        )
        # Tracebacks of handler failures; the testing kit fails a test that leaves any.
        self.internal_errors: list[str] = []
        self.latencies = LatencyWindow()  # end-to-end latencies measured, for `stats`
        self.planner = SplitPlanner(
            settings, self.packages, engine=None, on_measured=self.latencies.add
        )
        self.explainer = Explainer(self.instance, self.planner, settings.explain_interval)
        # The fleet of instances on this broker (a fleet of one when alone).
        self.fleet = FleetCoordinator(settings, self)
        self.pipeline = InferencePipeline(
            registry=self.registry,
            packages=self.packages,
            engine=None,
            planner=self.planner,
            outbox=self.outbox,
            counters=self.counters,
            max_payload=settings.max_payload,
            answered=self._publish_decision,
            changed=self._changes_notify,
            internal_errors=self.internal_errors,
        )
        self._started_wall = time.time()
        self._connected = asyncio.Event()
        self._changes = Changes()
        # Capped at 2 s so devices offload again within a few seconds of a broker's return.
        self._supervisor = ConnectionSupervisor(
            self._serve_once,
            backoff=Backoff(0.2, 2.0),
            changes=self._changes,
            log=self._log,
            who="service",
            name=f"service-{self.instance}",
        )
        self._stopping = self._supervisor.stopping

    async def _changes_notify(self) -> None:
        await self._changes.notify()

    @property
    def results_published(self) -> int:
        return self.counters.answered

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._supervisor.started:
            raise RuntimeError("service already running")
        if self.packages:
            # Imported here: a lifecycle-only service never loads LiteRT.
            from sciot_mqtt.service.engine import InferenceEngine

            self.engine = InferenceEngine(
                self.packages,
                workers=self.settings.workers,
                max_pending=self.settings.max_pending,
            )
            await self.engine.__aenter__()
            self.planner.engine = self.pipeline.engine = self.engine
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
        """Hand devices over to the fleet, finish inferences under way, publish
        `online: false`, disconnect, end every task."""
        if self.outbox.mqtt is not None and not self._stopping.is_set():
            with contextlib.suppress(ConnectionLostError):
                left = await self.fleet.hand_over(
                    self.settings.handover_timeout, self._changes.wait_until
                )
                if left:
                    self._log.warning("devices not taken over before stopping", devices=left)
        await self._supervisor.stop()
        await self.pipeline.cancel()
        if self.engine is not None:
            await self.engine.__aexit__(None, None, None)
            self.engine = self.planner.engine = self.pipeline.engine = None

    @property
    def alive(self) -> bool:
        """True while the service runs (it has not stopped, by itself or when told)."""
        return self._supervisor.alive

    @property
    def mqtt(self) -> MqttSession | None:
        """The live connection, None while disconnected."""
        return self.outbox.mqtt

    @property
    def failure(self) -> AccessDeniedError | None:
        """Why it stopped by itself: the broker refused its account."""
        return self._supervisor.failure

    async def connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def ended(self) -> None:
        """Return when it stopped by itself (`failure` says why) or was stopped."""
        await self._supervisor.ended()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds; it is checked after every change of the registry."""
        await self._changes.wait_until(predicate, timeout)

    async def _serve_once(self, backoff: Backoff) -> None:
        will = ServiceState(online=False, instance=self.instance)
        async with MqttSession(
            self.broker,
            client_id=service_client_id(self.instance),
            will=LastWill(service_topic(self.instance, ServiceTopic.STATE), will.encode()),
            keepalive=self.settings.keepalive,
        ) as mqtt:
            self.outbox.mqtt = mqtt
            try:
                settle = self.fleet.new_connection()
                await self._publish_service_state(mqtt, online=True)
                # The fleet's instances first, then the retained assign (the claims), split
                # and snapshot: the retained device states that follow trigger rebirths, and
                # their answers must find the recovered state. `infer` and `timings` only as
                # sent to this instance (topics.md, "Fleet").
                await mqtt.subscribe(*self.subscriptions())
                # Back after every retained message above: the fleet's view is then whole.
                ping_topic = service_topic(self.instance, ServiceTopic.PING)
                await mqtt.publish(ping_topic, settle.encode(), qos=1)
                self.hearing.reset()
                self.registry.touch_all()
                self._connected.set()
                backoff.reset()
                self._log.info("service online", broker=str(self.broker))
                await run_until_stopped(
                    self._stopping,
                    {
                        "service-receive": self._receive(mqtt),
                        "service-heartbeats": self._watch_heartbeats(),
                        "service-stats": self._publish_stats(mqtt),
                        "service-hearing": self._check_hearing(mqtt),
                        "service-explain": self._publish_explanations(),
                        "service-fleet": self._follow_fleet(),
                    },
                )
                if self._stopping.is_set():
                    await self.pipeline.drain(_DRAIN_TIMEOUT_S)
                    await self._publish_service_state(mqtt, online=False)
                    self._log.info("service offline")
            finally:
                self.outbox.mqtt = None
                self._connected.clear()

    def subscriptions(self) -> tuple[str, ...]:
        """What the service subscribes to on every connection."""
        return (
            service_filter(ServiceTopic.STATE),
            service_filter(ServiceTopic.STATS),
            device_filter(DeviceTopic.ASSIGN),
            device_filter(DeviceTopic.SPLIT),
            device_filter(DeviceTopic.SNAPSHOT),
            device_filter(DeviceTopic.STATE),
            device_filter(DeviceTopic.BIRTH),
            device_filter(DeviceTopic.HB),
            device_filter(DeviceTopic.INFER, self.instance),
            device_filter(DeviceTopic.TIMINGS, self.instance),
            service_topic(self.instance, ServiceTopic.PING),
        )

    async def _publish_service_state(self, mqtt: MqttSession, *, online: bool) -> None:
        state = ServiceState(
            online=online,
            instance=self.instance,
            started_at=self._started_wall,
            version=__version__,
            **(self.fleet.state_fields() if online else {}),
        )
        await mqtt.publish(
            service_topic(self.instance, ServiceTopic.STATE), state.encode(), qos=1, retain=True
        )

    # --- the fleet's host (coordinator.py) ------------------------------------------------

    async def send(self, device_id: str, message: Message) -> int:
        return await self.outbox.send(device_id, message)

    async def reject(
        self, device_id: str, topic: DeviceTopic, error: ProtocolError, seq: int | None
    ) -> None:
        await self.outbox.reject(device_id, topic, error, seq)

    async def publish_own_state(self) -> None:
        mqtt = self.outbox.mqtt
        if mqtt is not None:
            await self._publish_service_state(mqtt, online=True)

    async def request_rebirth(self, device_id: str, why: str) -> None:
        await self.outbox.request_rebirth(device_id, why)

    # --- receiving ------------------------------------------------------------------------

    async def _receive(self, mqtt: MqttSession) -> None:
        async for message in mqtt.messages():
            self.counters.rx += 1
            self.hearing.heard_something()
            try:
                await self._dispatch(message)
            except ConnectionLostError:
                raise
            except Exception:
                # One device's message must never stop the service for the others.
                address = parse_topic(message.topic)
                device_id = address.device_id if isinstance(address, DeviceAddress) else "?"
                self._log.exception("handler failed", device_id=device_id, topic=message.topic)
                self.internal_errors.append(traceback.format_exc())
                if isinstance(address, DeviceAddress):
                    failure = ProtocolError(
                        ErrorCode.INTERNAL, "the service failed on this message"
                    )
                    await self.outbox.reject(device_id, address.kind, failure, None)
            await self._changes.notify()

    async def _dispatch(self, message: Inbound) -> None:
        address = parse_topic(message.topic)
        if isinstance(address, ServiceAddress):
            await self._on_service_message(address, message)
            return
        if not isinstance(address, DeviceAddress):
            return
        device_id, kind = address.device_id, address.kind
        if kind in (DeviceTopic.ASSIGN, DeviceTopic.SPLIT, DeviceTopic.SNAPSHOT):
            if is_valid_device_id(device_id):
                await self._on_fleet_record(device_id, kind, message)
            return
        if kind in (DeviceTopic.RESULT, DeviceTopic.CMD, DeviceTopic.ERROR, DeviceTopic.EXPLAIN):
            return
        if kind in (DeviceTopic.INFER, DeviceTopic.TIMINGS) and address.instance != self.instance:
            return  # (not subscribed; sent to another instance)
        if kind not in (DeviceTopic.INFER, DeviceTopic.TIMINGS) and not self.fleet.serves(
            device_id
        ):
            # Another instance serves this device or places it: it hears its lifecycle and
            # answers its faults. Here it only feeds the fleet's view.
            await self._observe(device_id, kind, message)
            return
        if not is_valid_device_id(device_id) or device_id.startswith(RESERVED_PREFIX):
            # `sciot-` names belong to service and health accounts (topics.md, "Clients and
            # accounts"): on Mosquitto such an account may publish as a device of that name.
            if message.payload or not message.retain:  # an empty retained message clears
                invalid = ProtocolError(
                    ErrorCode.INVALID_DEVICE_ID,
                    "device id is not a safe id (1-64 of A-Z a-z 0-9 _ . -, not sciot-...)",
                )
                await self.outbox.reject(device_id, kind, invalid, None)
            return
        try:
            if kind is DeviceTopic.BIRTH:
                birth = Birth.decode(message.payload)
                if birth.protocol != PROTOCOL_VERSION:
                    raise ProtocolError(
                        ErrorCode.UNSUPPORTED_VERSION,
                        f"protocol {birth.protocol} not supported; this service speaks "
                        f"{PROTOCOL_VERSION}",
                    )
                await self.fleet.on_birth(device_id, birth)
            elif kind is DeviceTopic.STATE:
                if message.retain and not message.payload:
                    return  # someone cleared the retained state; nothing to learn
                state = DeviceState.decode(message.payload)
                self.fleet.on_device_state(device_id, state, retained=message.retain)
                if (
                    self.registry.served(device_id) is None
                    and self.fleet.fleet.owner(device_id) is not self.fleet.me
                ):
                    return  # placed by this instance, served by none yet: its birth decides
                reaction = self.registry.on_state(device_id, state, retained=message.retain)
                await self._react(device_id, reaction, rebirth_reason="service restarted")
            elif kind is DeviceTopic.HB:
                reaction = self.registry.on_heartbeat(device_id, Heartbeat.decode(message.payload))
                await self._react(device_id, reaction, rebirth_reason="unknown session")
            elif kind is DeviceTopic.INFER:
                await self.pipeline.on_infer(device_id, message.payload, time.perf_counter())
            elif kind is DeviceTopic.TIMINGS:
                await self._on_timings(device_id, LocalTimings.decode(message.payload))
        except ProtocolError as error:
            await self.outbox.reject(device_id, kind, error, None)

    async def _on_service_message(self, address: ServiceAddress, message: Inbound) -> None:
        if address.kind is ServiceTopic.PING:
            if address.instance == self.instance:
                await self._on_ping(message.payload)
        elif address.kind is ServiceTopic.STATE:
            await self.fleet.on_member_state(address.instance, message.payload)
        elif address.kind is ServiceTopic.STATS:
            self.fleet.on_member_stats(address.instance, message.payload)

    async def _on_fleet_record(self, device_id: str, kind: DeviceTopic, message: Inbound) -> None:
        """A retained record of the fleet: the claim (`assign`), `split` or `snapshot`."""
        if kind is DeviceTopic.ASSIGN:
            if message.retain and message.payload:
                with contextlib.suppress(ProtocolError):
                    assign = Assign.decode(message.payload)
                    if assign.instance == self.instance:
                        self.registry.on_recovered_assign(device_id, assign)
            await self.fleet.on_assign(device_id, message.payload)
        elif kind is DeviceTopic.SPLIT:
            decision = self.fleet.on_split(device_id, message.payload)
            if message.retain and decision is not None and self.registry.served(device_id):
                self.registry.on_recovered_split(device_id, decision)
        else:
            self.fleet.on_snapshot(device_id, message.payload)

    async def _observe(self, device_id: str, kind: DeviceTopic, message: Inbound) -> None:
        """A device another instance serves: what the fleet's view needs, no answer."""
        if not is_valid_device_id(device_id) or device_id.startswith(RESERVED_PREFIX):
            return
        with contextlib.suppress(ProtocolError):
            if kind is DeviceTopic.STATE and message.payload:
                state = DeviceState.decode(message.payload)
                self.fleet.on_device_state(device_id, state, retained=message.retain)
            elif kind is DeviceTopic.BIRTH:
                birth = Birth.decode(message.payload)
                if birth.protocol == PROTOCOL_VERSION:
                    await self.fleet.on_birth(device_id, birth)

    async def answer_birth(self, device_id: str, birth: Birth) -> None:
        """Serve the device here: register it, publish its `assign`, decide its split."""
        before = self.registry.get(device_id)
        if before is not None and (
            before.released or (before.birth is not None and before.birth.kind != birth.kind)
        ):
            # Back from another instance (whose snapshot is newer), or another kind of
            # hardware behind the same id: what we learnt of its timing is void.
            before.cost = None
        assign = self.registry.on_birth(device_id, birth)
        record = self.registry.get(device_id)
        assert record is not None
        self.fleet.answered(record)
        self._log.info(
            "device registered",
            device_id=device_id,
            session=birth.session,
            kind=birth.kind,
            model=assign.model,
        )
        await self.outbox.send(device_id, assign)
        known = record.decision
        if known is not None and (known.model != assign.model or known.model not in self.packages):
            known = None  # a decision this service would not make now: leave it alone
        await self._publish_decision(record)
        if known is not None and record.decision is known:
            # Unchanged, so nothing was sent; send it again all the same: a broker that
            # crashed within its autosave interval may have lost the retained copy.
            await self.outbox.send(device_id, known)
        await self.fleet.after_birth(record)

    async def _react(self, device_id: str, reaction: Reaction, *, rebirth_reason: str) -> None:
        """Log what a state or heartbeat changed; decide again and ask for a birth if needed."""
        if reaction.late_will_session is not None:
            record = self.registry.get(device_id)
            self._log.info(
                "late will of an old session ignored",
                device_id=device_id,
                will_session=reaction.late_will_session,
                current_session=record.session if record else None,
            )
        if reaction.transition is not None:
            await self._on_transition(reaction.transition)
        if reaction.rebirth:
            await self.outbox.request_rebirth(device_id, rebirth_reason)

    async def _on_transition(self, transition: Transition) -> None:
        self._log.info(
            "device presence",
            device_id=transition.device_id,
            before=transition.before.value,
            after=transition.after.value,
            why=transition.why,
        )
        record = self.registry.get(transition.device_id)
        if record is not None:
            self.explainer.presence_changed(record)
            await self._publish_decision(record)

    async def _on_timings(self, device_id: str, timings: LocalTimings) -> None:
        record = self.registry.get(device_id)
        if record is None or record.session != timings.session or record.model != timings.model:
            return  # a run from before the current session says nothing about it now
        cost = self.planner.cost_model(record)
        if cost is None:
            return
        if len(timings.device_ms) != cost.n_ops:
            raise ProtocolError(
                ErrorCode.INVALID,
                f"timings has {len(timings.device_ms)} times; {timings.model} has {cost.n_ops} ops",
            )
        probe = timings.reason == "probe"
        self.counters.local_runs += 1
        cost.on_local_run(timings.device_ms, probe=probe)
        if timings.rtt_ms is not None and timings.rtt_seq is not None:
            cost.on_round_trip(timings.rtt_seq, timings.rtt_ms)
        await self._publish_decision(record, after_probe=probe)

    # --- decisions ------------------------------------------------------------------------

    async def _publish_decision(self, record: DeviceRecord, *, after_probe: bool = False) -> None:
        """Publish the device's retained split decision when split, mode or model change."""
        if record.released:
            return  # another instance decides for it now
        message = self.planner.update(record, after_probe=after_probe)
        if message is None:
            self.explainer.observed(record)
            await self.fleet.after_decision(record)
            return
        self.explainer.decided(record, message)
        self._log.info(
            "split decision",
            device_id=record.device_id,
            split=message.split,
            mode=message.mode,
            predicted_ms=None if message.predicted_ms is None else round(message.predicted_ms, 2),
            reason=message.reason,
        )
        await self.outbox.send(record.device_id, message)
        await self.fleet.after_decision(record)

    # --- periodic -------------------------------------------------------------------------

    async def _on_ping(self, payload: bytes) -> None:
        """Answer a health check's ping, or note that one of our own came back."""
        try:
            ping = Ping.decode(payload)
        except ProtocolError as error:
            self._log.warning("ping rejected", code=error.code.value, reason=error.reason)
            return
        if await self.fleet.on_ping(ping):
            return
        if self.hearing.is_own(ping):
            self.hearing.came_back(ping)
        else:
            await self.outbox.pong(ping)

    async def _check_hearing(self, mqtt: MqttSession) -> None:
        """Ping ourselves every stats interval; deaf (a ping overdue): reconnect."""
        ping_topic = service_topic(self.instance, ServiceTopic.PING)
        while True:
            if self.hearing.deaf():
                self.deaf_reconnects += 1
                self._log.error(
                    "the service no longer hears its subscriptions; reconnecting",
                    waited_s=self.hearing.patience * self.hearing.interval,
                )
                raise ConnectionLostError("deaf: the service's own ping did not come back")
            await mqtt.publish(ping_topic, self.hearing.ping().encode(), qos=1)
            await asyncio.sleep(self.hearing.interval)

    async def _publish_explanations(self) -> None:
        """The retained explanations that are due (never per inference: `explain.py`)."""
        while True:
            await asyncio.sleep(_EXPLAIN_TICK_S)
            for device_id, explanation in self.explainer.due(self.registry.get):
                await self.outbox.send(device_id, explanation)

    async def _follow_fleet(self) -> None:
        """Sample the load; now and then, do what the fleet's view asks (orphans, moves)."""
        period = min(0.25, self.settings.stats_interval / 4)
        ticks_per_sweep = max(1, round(min(1.0, self.settings.stats_interval) / period))
        for tick in itertools.count():
            await asyncio.sleep(period)
            self.fleet.load.sample(self.counters.running)
            if tick % ticks_per_sweep == 0:
                await self.fleet.tick()

    async def _watch_heartbeats(self) -> None:
        period = min(0.25, self.settings.heartbeat_interval / 4)
        while True:
            await asyncio.sleep(period)
            transitions = self.registry.sweep()
            for transition in transitions:
                await self._on_transition(transition)
            if transitions:
                await self._changes.notify()

    async def _publish_stats(self, mqtt: MqttSession) -> None:
        reporter = StatsReporter(self.instance, self.counters, self.latencies)
        refused, evicted = self.replies.refused, self.registry.evicted
        while True:
            await asyncio.sleep(self.settings.stats_interval)
            if self.replies.refused > refused or self.registry.evicted > evicted:
                self._log.warning(
                    "limits applied",
                    replies_dropped=self.replies.refused - refused,
                    devices_forgotten=self.registry.evicted - evicted,
                    devices=len(self.registry),
                )
                refused, evicted = self.replies.refused, self.registry.evicted
            queue_ms = self.engine.queue_ms if self.engine is not None else 0.0
            counts = self.registry.counts()
            load = ServiceLoad(queue=self.fleet.load.take(), served=counts.online)
            stats = reporter.message(counts, queue_ms, load=load)
            await mqtt.publish(
                service_topic(self.instance, ServiceTopic.STATS), stats.encode(), qos=0
            )
