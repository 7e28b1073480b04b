"""Which split each device should use next, as the retained `split` message to publish.

The cost model (`decisions.py`) predicts; this module applies the service's rules around it:
a device that is not online runs locally, `--split` pins every device, and a decision is
published only when split, mode or model change, numbered on from the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from sciot_mqtt.protocol import U32_MAX, SplitDecision
from sciot_mqtt.service.decisions import Decision, DecisionSettings, DeviceCostModel, Measured
from sciot_mqtt.service.registry import DeviceRecord, Presence
from sciot_mqtt.settings import ServiceSettings

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage
    from sciot_mqtt.service.engine import InferenceEngine


def decision_settings(settings: ServiceSettings) -> DecisionSettings:
    return DecisionSettings(
        alpha=settings.ema_alpha,
        rel_margin=settings.hysteresis_rel,
        abs_margin_ms=settings.hysteresis_ms,
        window=settings.variance_window,
        cv_threshold=settings.variance_cv,
        measure_budget=settings.measure_budget,
    )


class SplitPlanner:
    """Turns what is known of a device into its next `split` decision."""

    def __init__(
        self,
        settings: ServiceSettings,
        packages: Mapping[str, ModelPackage],
        engine: InferenceEngine | None,
        on_measured: Callable[[Measured], None] | None = None,
    ) -> None:
        """`engine` supplies the edge's own times and queue; None: edge costs count as 0.
        `on_measured` hears of every inference a device's cost model measures."""
        self.pinned_split = settings.split
        self.settings = decision_settings(settings)
        self.packages = packages
        self.engine = engine
        self.on_measured = on_measured
        self._bytes_at: dict[str, tuple[ModelPackage, list[int]]] = {}

    def cost_model(self, record: DeviceRecord) -> DeviceCostModel | None:
        """The device's cost model for its assigned model (None without a loaded model)."""
        package = self.packages.get(record.model) if record.model else None
        if package is None:
            return None
        # Asked once per `infer`: the boundary sizes are summed once per package, not per call.
        known = self._bytes_at.get(package.model_id)
        if known is None or known[0] is not package:
            known = self._bytes_at[package.model_id] = (
                package,
                [b.nbytes for b in package.boundaries],
            )
        bytes_at = known[1]
        if record.cost is None or record.cost.bytes_at != bytes_at:
            record.cost = DeviceCostModel(
                package.num_ops, bytes_at, self.settings, on_measured=self.on_measured
            )
        return record.cost

    def edge_costs(self, model_id: str) -> tuple[Sequence[float], float]:
        """The edge's per-operator times for `model_id` and its queue wait now (ms)."""
        engine = self.engine
        if engine is None:
            return [0.0] * self.packages[model_id].num_ops, 0.0
        return engine.profiles[model_id].ms, engine.queue_ms

    def next_decision(self, record: DeviceRecord, *, after_probe: bool = False) -> Decision | None:
        """What the device should do now (None: no loaded model assigned to it)."""
        package = self.packages.get(record.model) if record.model else None
        if package is None:
            return None
        n = package.num_ops
        if record.presence is not Presence.ONLINE:
            return Decision(n, "local", None, f"device {record.presence.value}")
        if self.pinned_split is not None:
            split = min(self.pinned_split, n)
            mode: Literal["offload", "local"] = "local" if split == n else "offload"
            return Decision(split, mode, None, "pinned by the service")
        cost = self.cost_model(record)
        assert cost is not None
        edge_ms, queue_ms = self.edge_costs(package.model_id)
        return cost.decide(edge_ms, queue_ms, after_probe=after_probe)

    def update(self, record: DeviceRecord, *, after_probe: bool = False) -> SplitDecision | None:
        """The new `split` message when split, mode or model change (kept in the record)."""
        decision = self.next_decision(record, after_probe=after_probe)
        if decision is None or record.model is None:
            return None
        previous = record.decision
        if previous is not None and (previous.split, previous.mode, previous.model) == (
            decision.split,
            decision.mode,
            record.model,
        ):
            return None
        message = SplitDecision(
            decision=((previous.decision + 1) & U32_MAX) if previous else 1,
            model=record.model,
            split=decision.split,
            mode=decision.mode,
            reason=decision.reason[:200],
            predicted_ms=decision.predicted_ms,
        )
        record.decision = message
        return message
