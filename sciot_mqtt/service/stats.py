"""What the service counts, and the `stats` message it publishes from the counts."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace

import numpy as np

from sciot_mqtt.protocol import (
    DeviceCounts,
    InferenceCounts,
    InferenceWindow,
    MessageRates,
    ServiceLoad,
    ServiceStats,
)
from sciot_mqtt.protocol.codec import TIMING_MAX_MS
from sciot_mqtt.service.decisions import Measured


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
    local_runs: int = 0  # device-only runs reported on `timings` (current sessions)


class LatencyWindow:
    """End-to-end latencies the service measured since the last `stats`: a uniform sample
    of at most `keep` of them (reservoir), so a busy interval costs bounded memory."""

    def __init__(self, keep: int = 4096, rng: random.Random | None = None) -> None:
        self.keep = keep
        self.samples: list[float] = []
        self.seen = 0
        self._rng = rng or random.Random(0)

    def add(self, measured: Measured) -> None:
        self.seen += 1
        if len(self.samples) < self.keep:
            self.samples.append(measured.total_ms)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.keep:
            self.samples[slot] = measured.total_ms

    def take(self) -> tuple[int, float | None, float | None]:
        """(count, p50, p99) of the interval, and start a new one."""
        samples, seen = self.samples, self.seen
        self.samples, self.seen = [], 0
        if not samples:
            return seen, None, None
        p50, p99 = np.percentile(np.asarray(samples), [50, 99])
        return seen, min(float(p50), TIMING_MAX_MS), min(float(p99), TIMING_MAX_MS)


class StatsReporter:
    """Builds `stats` messages: totals since start and rates since the previous message."""

    def __init__(
        self, instance: str, counters: Counters, latencies: LatencyWindow | None = None
    ) -> None:
        self.instance = instance
        self.counters = counters
        self.latencies = latencies or LatencyWindow()
        self._started = time.monotonic()
        self._previous = Counters()
        self._previous_at = self._started

    def message(
        self, devices: DeviceCounts, queue_ms: float = 0.0, load: ServiceLoad | None = None
    ) -> ServiceStats:
        """`queue_ms`: the edge queue wait the decisions use now; `load`: for the fleet."""
        now, counters = time.monotonic(), self.counters
        interval = max(now - self._previous_at, 1e-9)
        previous, self._previous, self._previous_at = self._previous, replace(counters), now
        measured, p50, p99 = self.latencies.take()
        return ServiceStats(
            instance=self.instance,
            uptime_s=now - self._started,
            devices=devices,
            rates=MessageRates(
                rx=(counters.rx - previous.rx) / interval,
                tx=(counters.tx - previous.tx) / interval,
                errors=(counters.errors - previous.errors) / interval,
            ),
            rx_total=counters.rx,
            tx_total=counters.tx,
            errors_total=counters.errors,
            inference=InferenceCounts(
                received=counters.infer,
                answered=counters.answered,
                rejected=counters.infer_rejected,
                duplicates=counters.duplicates,
                lost=counters.lost,
                running=counters.running,
            ),
            window=InferenceWindow(
                interval_s=min(interval, 86400.0),
                offloaded=counters.answered - previous.answered,
                local=counters.local_runs - previous.local_runs,
                samples=measured,
                latency_p50_ms=p50,
                latency_p99_ms=p99,
                queue_ms=min(max(queue_ms, 0.0), TIMING_MAX_MS),
            ),
            load=load,
        )
