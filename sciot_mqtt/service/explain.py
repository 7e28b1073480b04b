"""The retained per-device explanation (`sciot/v1/dev/{id}/explain`): why a device is cut where
it is, for dashboards. Pure logic, no I/O: the service says what happened and asks, every
tick, which explanations are due.

Publishing is rate-limited per device and never happens per inference: a new decision or
a change of presence goes out at the next tick; predictions and measurements that merely
moved go out at most every `interval_s`, and only when they moved materially.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from sciot_mqtt.protocol import (
    DecisionRecord,
    LinkFit,
    MeasuredLatency,
    PredictedLatency,
    SplitDecision,
    SplitExplanation,
)
from sciot_mqtt.protocol.codec import TIMING_MAX_MS
from sciot_mqtt.service.costcurve import curve_parts
from sciot_mqtt.service.decisions import DeviceCostModel
from sciot_mqtt.service.planner import SplitPlanner
from sciot_mqtt.service.registry import DeviceRecord

HISTORY = 10  # earlier decisions kept per device
MEASURED = 16  # recent inferences sent per device
_MOVED_REL = 0.05  # a prediction "moved" by this share...
_MOVED_MS = 0.5  # ...and this many ms
_SWEEP_S = 30.0  # how often devices the registry forgot (evicted) are forgotten here too

_log = structlog.get_logger("sciot.service")


def _ms(value: float) -> float:
    """A duration as the contract carries it: finite, 0 to the limit."""
    if not math.isfinite(value):
        return TIMING_MAX_MS
    return min(max(value, 0.0), TIMING_MAX_MS)


@dataclass
class _Device:
    history: deque[DecisionRecord] = field(default_factory=lambda: deque(maxlen=HISTORY + 1))
    urgent: bool = True  # a decision or presence to show: at the next tick
    dirty: bool = False  # something observed since the last explanation
    sent_at: float = -math.inf  # monotonic time of the last one
    sent: SplitExplanation | None = None


class Explainer:
    """Which devices' explanations are due, and what they say."""

    def __init__(
        self,
        instance: str,
        planner: SplitPlanner,
        interval_s: float,
        *,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.instance = instance
        self.planner = planner
        self.interval_s = interval_s
        self._wall = wall
        self._clock = clock
        self._devices: dict[str, _Device] = {}
        self.published = 0
        self._too_large_logged = False
        self._swept_at = clock()

    def _state(self, device_id: str) -> _Device:
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = _Device()
        return state

    # --- what happened --------------------------------------------------------------------

    def decided(self, record: DeviceRecord, message: SplitDecision) -> None:
        """A new `split` went out for the device (a presence change makes one too)."""
        state = self._state(record.device_id)
        state.history.appendleft(
            DecisionRecord(
                decision=message.decision,
                split=message.split,
                mode=message.mode,
                reason=message.reason,
                predicted_ms=message.predicted_ms,
                at=self._wall(),
            )
        )
        state.urgent = True

    def presence_changed(self, record: DeviceRecord) -> None:
        """The device came online, went stale or offline: shown at the next tick."""
        self._state(record.device_id).urgent = True

    def observed(self, record: DeviceRecord) -> None:
        """The device's cost model learnt something (an inference, a device-only run)."""
        self._state(record.device_id).dirty = True

    # --- what to publish ------------------------------------------------------------------

    def due(
        self, lookup: Callable[[str], DeviceRecord | None]
    ) -> list[tuple[str, SplitExplanation]]:
        """The explanations to publish now; devices the registry forgot are forgotten here."""
        now = self._clock()
        if now - self._swept_at >= _SWEEP_S:
            self._swept_at = now
            for device_id in [d for d in self._devices if lookup(d) is None]:
                del self._devices[device_id]
        out: list[tuple[str, SplitExplanation]] = []
        for device_id, state in list(self._devices.items()):
            periodic = state.dirty and now - state.sent_at >= self.interval_s
            if not (state.urgent or periodic):
                continue
            record = lookup(device_id)
            if record is None:
                del self._devices[device_id]
                continue
            explanation = self.explain(record, state)
            if explanation is None:
                continue  # no model yet: keep the flags for when it has one
            if state.urgent or _moved(state.sent, explanation):
                out.append((device_id, explanation))
                state.sent = explanation
                state.sent_at = now
            state.urgent = state.dirty = False
        self.published += len(out)
        return out

    def explain(
        self, record: DeviceRecord, state: _Device | None = None
    ) -> SplitExplanation | None:
        """The device's explanation now (None: no model assigned to it yet)."""
        model = record.model
        if model is None or model not in self.planner.packages:
            return None
        state = state or self._state(record.device_id)
        decision = record.decision
        history = list(state.history)
        current: DecisionRecord | None = None
        if history and decision is not None and history[0].decision == decision.decision:
            current, history = history[0], history[1:]
        elif decision is not None:  # recovered from the retained `split` after a restart
            current = DecisionRecord(
                decision=decision.decision,
                split=decision.split,
                mode=decision.mode,
                reason=decision.reason,
                predicted_ms=decision.predicted_ms,
            )
        cost = record.cost
        explanation = SplitExplanation(
            instance=self.instance,
            at=self._wall(),
            presence=record.presence.value,
            kind=record.birth.kind if record.birth is not None else None,
            model=model,
            ops=self.planner.packages[model].num_ops,
            decision=current,
            history=history[:HISTORY],
            predicted=self._predicted(model, cost),
            link=_link(cost),
            measured=_measured(cost),
        )
        return self._fit(explanation)

    def _predicted(self, model: str, cost: DeviceCostModel | None) -> PredictedLatency | None:
        if cost is None or not cost.device.complete:
            return None
        edge_ms, queue_ms = self.planner.edge_costs(model)
        if len(edge_ms) != cost.n_ops:
            return None
        parts = curve_parts(
            cost.device.values(),
            edge_ms,
            cost.bytes_at,
            latency_ms=cost.link.latency_ms,
            ms_per_byte=cost.link.ms_per_byte,
            queue_ms=queue_ms,
        )
        return PredictedLatency(
            device_ms=[_ms(x) for x in parts.device],
            link_ms=[_ms(x) for x in parts.link],
            queue_ms=[_ms(x) for x in parts.queue],
            edge_ms=[_ms(x) for x in parts.edge],
            bytes=list(cost.bytes_at),
        )

    def _fit(self, explanation: SplitExplanation) -> SplitExplanation | None:
        """Within the topic's size limit: a model of thousands of operators drops its
        per-split prediction rather than the whole explanation."""
        if len(explanation.encode()) <= SplitExplanation.MAX_BYTES:
            return explanation
        if not self._too_large_logged:
            self._too_large_logged = True
            _log.warning(
                "explanations of this model are too large; sent without predictions",
                model=explanation.model,
                ops=explanation.ops,
            )
        smaller = explanation.model_copy(update={"predicted": None, "measured": []})
        return smaller if len(smaller.encode()) <= SplitExplanation.MAX_BYTES else None


def _link(cost: DeviceCostModel | None) -> LinkFit | None:
    if cost is None:
        return None
    kbps = cost.link.kbps
    return LinkFit(
        latency_ms=_ms(cost.link.latency_ms),
        kbps=kbps if math.isfinite(kbps) else None,
        samples=cost.link.observed,
    )


def _measured(cost: DeviceCostModel | None) -> list[MeasuredLatency]:
    if cost is None:
        return []
    return [
        MeasuredLatency(
            split=m.split,
            total_ms=_ms(m.total_ms),
            device_ms=_ms(m.device_ms),
            link_ms=None if m.link_ms is None else _ms(m.link_ms),
            service_ms=None if m.service_ms is None else _ms(m.service_ms),
        )
        for m in list(cost.measured)[-MEASURED:]
    ]


def _moved(before: SplitExplanation | None, now: SplitExplanation) -> bool:
    """Whether `now` says something `before` did not: another decision, presence or link
    fit, new measurements, or a prediction that moved by more than a little."""
    if before is None:
        return True
    if (before.decision, before.presence, before.model, before.kind) != (
        now.decision,
        now.presence,
        now.model,
        now.kind,
    ):
        return True
    if before.measured != now.measured or _link_moved(before.link, now.link):
        return True
    old, new = before.predicted, now.predicted
    if old is None or new is None:
        return old is not new
    if len(old.bytes) != len(new.bytes):
        return True
    for parts_old, parts_new in zip(_totals(old), _totals(new), strict=True):
        if abs(parts_new - parts_old) > max(_MOVED_MS, _MOVED_REL * parts_old):
            return True
    return False


def _link_moved(before: LinkFit | None, now: LinkFit | None) -> bool:
    if before is None or now is None:
        return before is not now
    if abs(now.latency_ms - before.latency_ms) > max(_MOVED_MS, _MOVED_REL * before.latency_ms):
        return True
    if before.kbps is None or now.kbps is None:
        return before.kbps is not now.kbps
    return abs(now.kbps - before.kbps) > _MOVED_REL * before.kbps


def _totals(predicted: PredictedLatency) -> list[float]:
    return [
        d + lk + q + e
        for d, lk, q, e in zip(
            predicted.device_ms,
            predicted.link_ms,
            predicted.queue_ms,
            predicted.edge_ms,
            strict=True,
        )
    ]
