"""What the service does about a device's lifecycle: births answered, presence changes,
device-only timings, link-check echoes, and the retained split decision published when it
changes.

The service dispatches; this module decides what each lifecycle message means for the device's
record (`registry.py`), its cost model (`planner.py`), its explanation (`explain.py`) and the
fleet (`coordinator.py`), and publishes the answers through the outbox.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.protocol import Birth, Echo, LocalTimings
from sciot_mqtt.service.coordinator import FleetCoordinator
from sciot_mqtt.service.explain import Explainer
from sciot_mqtt.service.outbox import MqttOutbox
from sciot_mqtt.service.planner import SplitPlanner
from sciot_mqtt.service.registry import DeviceRecord, Reaction, Registry, Transition
from sciot_mqtt.service.stats import Counters

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

__all__ = ["DeviceLifecycle"]


class DeviceLifecycle:
    """The service's answers to a device's lifecycle messages."""

    def __init__(
        self,
        *,
        registry: Registry,
        packages: dict[str, ModelPackage],
        planner: SplitPlanner,
        outbox: MqttOutbox,
        fleet: FleetCoordinator,
        explainer: Explainer,
        counters: Counters,
        log: Any,
    ) -> None:
        self.registry = registry
        self.packages = packages
        self.planner = planner
        self.outbox = outbox
        self.fleet = fleet
        self.explainer = explainer
        self.counters = counters
        self._log = log

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
        await self.publish_decision(record)
        if known is not None and record.decision is known:
            # Unchanged, so nothing was sent; send it again all the same: a broker that
            # crashed within its autosave interval may have lost the retained copy.
            await self.outbox.send(device_id, known)
        await self.fleet.after_birth(record)

    async def react(self, device_id: str, reaction: Reaction, *, rebirth_reason: str) -> None:
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
            await self.on_transition(reaction.transition)
        if reaction.rebirth:
            await self.outbox.request_rebirth(device_id, rebirth_reason)

    async def on_transition(self, transition: Transition) -> None:
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
            await self.publish_decision(record)

    async def on_timings(self, device_id: str, timings: LocalTimings) -> None:
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
        await self.publish_decision(record, after_probe=probe)

    async def on_echo(self, device_id: str, payload: bytes, received_at: float) -> None:
        """Answer a link check at once; remember its bytes for the round trip the device
        reports with its next message (topics.md, rule 8)."""
        echo = Echo.decode(payload)
        record = self.registry.get(device_id)
        if record is None or record.session != echo.session or record.released:
            raise ProtocolError(ErrorCode.NOT_REGISTERED, "echo from a device not served here")
        reply_bytes = await self.outbox.echo_reply(device_id, echo)
        cost = self.planner.cost_model(record)
        if reply_bytes is None or cost is None:
            return  # not answered (flooded): no round trip will come
        service_ms = (time.perf_counter() - received_at) * 1000
        cost.on_echo(echo.seq, len(payload) + reply_bytes, service_ms)
        await self.publish_decision(record)

    async def publish_decision(self, record: DeviceRecord, *, after_probe: bool = False) -> None:
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
