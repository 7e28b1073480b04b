"""Summaries of a device's inferences, as printed by `sciot-mqtt device --count`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from sciot_mqtt.device.device import InferenceRecord


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
    }
