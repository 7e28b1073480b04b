"""Summaries of a device's run and its inferences, as printed by `sciot-mqtt device`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sciot_mqtt.models.tasks import aggregate_summaries
from sciot_mqtt.protocol import DeviceMode

if TYPE_CHECKING:
    from sciot_mqtt.device.inference import InferenceRecord


@dataclass
class DeviceSummary:
    """What happened during a device's run; printed as one JSON line on exit."""

    device_id: str
    session: int
    mode_at_exit: DeviceMode  # after leaving: always local once disconnected
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
    # What measuring cost, apart from what users' inferences cost: payload bytes sent up
    # (`infer` and `timings` of users' inferences; probe reports and echoes) and device
    # compute (probe runs in place of an inference, refreshes beside them).
    user_uplink_bytes: int = 0
    measure_uplink_bytes: int = 0
    measure_device_ms: float = 0.0
    refreshes: int = 0  # probes answered off the critical path (operator times refreshed)
    refresh_device_ms: float = 0.0  # device time they took, between users' inferences
    refresh_mismatches: int = 0  # refreshes whose output differed from the service's result
    echoes_sent: int = 0  # link checks: echoes sent beside local runs (topics.md, rule 8)
    echoes_answered: int = 0  # ...answered, their round trip reported

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def summarize_inferences(records: Sequence[InferenceRecord]) -> dict[str, object]:
    totals = [r.total_ms for r in records]
    checked = [r.matches_local for r in records if r.matches_local is not None]
    return {
        "count": len(records),
        "offloaded": sum(r.path == "offload" for r in records),
        "local": sum(r.path == "local" for r in records),
        "fallback": sum(r.path == "fallback" for r in records),
        "reasons": dict(Counter(r.reason for r in records)),
        "splits": {str(k): v for k, v in sorted(Counter(r.split for r in records).items())},
        "latency_ms": {"p50": percentile(totals, 50), "p95": percentile(totals, 95)},
        "device_ms": {"p50": percentile([r.head_ms for r in records], 50)},
        "bytes_sent": sum(r.sent_bytes for r in records),
        "checked_against_local": len(checked),
        "all_match_local": bool(checked) and all(checked),
        "outputs": aggregate_summaries(r.result for r in records),
    }
