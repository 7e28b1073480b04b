"""The edge service: one MQTT connection, the device lifecycle, decisions and stats.

It dispatches what arrives: lifecycle messages to the registry, `infer` to the inference
pipeline (`pipeline.py`), timing reports to the device's cost model; and publishes what they
decide (`assign`, `split`, `cmd`, `error`, `stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
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
    ADDRESSED,
    PROTOCOL_VERSION,
    Birth,
    DeviceAddress,
    DeviceState,
    DeviceTopic,
    Heartbeat,
    LocalTimings,
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
from sciot_mqtt.service.lifecycle import DeviceLifecycle
from sciot_mqtt.service.limits import TokenBucket
from sciot_mqtt.service.outbox import MqttOutbox
from sciot_mqtt.service.pipeline import InferencePipeline
from sciot_mqtt.service.planner import SplitPlanner
from sciot_mqtt.service.registry import Registry
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
        self.fleet = FleetCoordinator(settings, self, self.outbox)
        self.lifecycle = DeviceLifecycle(
            registry=self.registry,
            packages=self.packages,
            planner=self.planner,
            outbox=self.outbox,
            fleet=self.fleet,
            explainer=self.explainer,
            counters=self.counters,
            log=self._log,
        )
        self.pipeline = InferencePipeline(
            registry=self.registry,
            packages=self.packages,
            engine=None,
            planner=self.planner,
            outbox=self.outbox,
            counters=self.counters,
            max_payload=settings.max_payload,
            answered=self.lifecycle.publish_decision,
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
                max_batch=self.settings.max_batch,
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
                # their answers must find the recovered state. `infer`, `timings`, `echo` only as
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
                        "service-fleet": self.fleet.follow(lambda: self.counters.running),
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
            device_filter(DeviceTopic.ECHO, self.instance),
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

    async def publish_own_state(self) -> None:
        mqtt = self.outbox.mqtt
        if mqtt is not None:
            await self._publish_service_state(mqtt, online=True)

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
                await self.fleet.on_record(device_id, kind, message)
            return
        if kind in (
            DeviceTopic.RESULT,
            DeviceTopic.CMD,
            DeviceTopic.ERROR,
            DeviceTopic.ECHO_REPLY,
            DeviceTopic.EXPLAIN,
        ):
            return
        if kind in ADDRESSED and address.instance != self.instance:
            return  # (not subscribed; sent to another instance)
        if kind not in ADDRESSED and not self.fleet.serves(device_id):
            # Another instance serves this device or places it: it hears its lifecycle and
            # answers its faults. Here it only feeds the fleet's view.
            await self.fleet.observe(device_id, kind, message)
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
                await self.lifecycle.react(device_id, reaction, rebirth_reason="service restarted")
            elif kind is DeviceTopic.HB:
                reaction = self.registry.on_heartbeat(device_id, Heartbeat.decode(message.payload))
                await self.lifecycle.react(device_id, reaction, rebirth_reason="unknown session")
            elif kind is DeviceTopic.INFER:
                await self.pipeline.on_infer(device_id, message.payload, time.perf_counter())
            elif kind is DeviceTopic.TIMINGS:
                await self.lifecycle.on_timings(device_id, LocalTimings.decode(message.payload))
            elif kind is DeviceTopic.ECHO:
                await self.lifecycle.on_echo(device_id, message.payload, time.perf_counter())
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

    async def answer_birth(self, device_id: str, birth: Birth) -> None:
        """Serve the device here (the fleet's `Place`): `lifecycle.py`."""
        await self.lifecycle.answer_birth(device_id, birth)

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

    async def _watch_heartbeats(self) -> None:
        period = min(0.25, self.settings.heartbeat_interval / 4)
        while True:
            await asyncio.sleep(period)
            transitions = self.registry.sweep()
            for transition in transitions:
                await self.lifecycle.on_transition(transition)
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
