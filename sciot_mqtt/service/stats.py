"""What the service counts, and the `stats` message it publishes from the counts."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from sciot_mqtt.protocol import (
    DeviceCounts,
    InferenceCounts,
    MessageRates,
    ServiceLoad,
    ServiceStats,
)


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


class StatsReporter:
    """Builds `stats` messages: totals since start and rates since the previous message."""

    def __init__(self, instance: str, counters: Counters) -> None:
        self.instance = instance
        self.counters = counters
        self._started = time.monotonic()
        self._previous = Counters()
        self._previous_at = self._started

    def message(self, devices: DeviceCounts, load: ServiceLoad | None = None) -> ServiceStats:
        now, counters = time.monotonic(), self.counters
        interval = max(now - self._previous_at, 1e-9)
        previous, self._previous, self._previous_at = self._previous, replace(counters), now
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
            load=load,
        )
