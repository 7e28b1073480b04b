"""What the cost model learns of a device from measurements: per-operator times (an EMA with
a window for the variance test) and the link (latency and bandwidth fitted to round trips).

Device times are EMAs of what the device reports per operator; the link is fitted from round
trips the device measures itself (no clock is shared), net of the service's own time for that
request. Pure logic, no I/O; `decisions.py` owns one of each per device.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sciot_mqtt.service.decisions import DecisionSettings


class OperatorTimes:
    """Per-operator EMA plus a sliding window for the variance test."""

    def __init__(self, n_ops: int, alpha: float, window: int) -> None:
        self.alpha = alpha
        self.ema: list[float | None] = [None] * n_ops
        self.samples: list[deque[float]] = [deque(maxlen=window) for _ in range(n_ops)]

    def observe(self, times_ms: Sequence[float], start: int = 0, *, refresh: bool = False) -> None:
        """Blend new times in; with `refresh` (a probe), an operator whose time moved by more
        than half is reset to the new value instead of being blended towards it slowly."""
        for offset, value in enumerate(times_ms):
            i = start + offset
            if not 0 <= i < len(self.ema) or not math.isfinite(value) or value < 0:
                continue
            current = self.ema[i]
            if current is None or (refresh and abs(value - current) > 0.5 * max(current, 1e-3)):
                self.ema[i] = value
                self.samples[i].clear()
            else:
                self.ema[i] = current + self.alpha * (value - current)
            self.samples[i].append(value)

    @property
    def complete(self) -> bool:
        return all(v is not None for v in self.ema)

    def values(self) -> list[float]:
        return [v if v is not None else 0.0 for v in self.ema]

    def unstable(self, threshold: float, min_sd_ms: float = 0.0, min_samples: int = 3) -> set[int]:
        """Operators whose times vary more than `threshold` (CV) and `min_sd_ms`, each with
        the next one."""
        marked: set[int] = set()
        for i, window in enumerate(self.samples):
            if len(window) < min_samples:
                continue
            mean = sum(window) / len(window)
            if mean <= 0:
                continue
            sd = math.sqrt(sum((x - mean) ** 2 for x in window) / (len(window) - 1))
            if sd / mean > threshold and sd > min_sd_ms:
                marked.update({i, i + 1} & set(range(len(self.samples))))
        return marked


@dataclass
class LinkEstimate:
    """time = latency + bytes / bandwidth, fitted to the device's own round-trip reports."""

    settings: DecisionSettings
    latency_ms: float = 0.0
    ms_per_byte: float = 0.0
    samples: deque[tuple[int, float]] = field(default_factory=deque)
    observed: int = 0

    def __post_init__(self) -> None:
        self.latency_ms = self.settings.prior_latency_ms
        self.ms_per_byte = 8.0 / self.settings.prior_kbps  # kbit/s = bit/ms
        self.samples = deque(maxlen=self.settings.link_window)

    @property
    def kbps(self) -> float:
        return 8.0 / self.ms_per_byte if self.ms_per_byte > 0 else math.inf

    def observe(self, nbytes: int, network_ms: float) -> None:
        if not math.isfinite(network_ms) or network_ms < 0 or nbytes <= 0:
            return
        expected = self.predict(nbytes)
        # A sample far off the fit means the link changed (a handover, congestion): what was
        # learnt before describes another link, so start over from this sample.
        # Only once a fit stands on a few samples: before that, misses are the prior's fault;
        # and only for a size the fit has seen (within 1.5x of its samples): a fit of one
        # size cannot tell latency from bandwidth, and a sample of another size (a link
        # check's echo beside 10 KB requests) is what tells them apart, not a change.
        sizes = [b for b, _ in self.samples]
        seen = bool(sizes) and min(sizes) / 1.5 <= nbytes <= 1.5 * max(sizes)
        step = (
            len(self.samples) >= 3
            and seen
            and abs(network_ms - expected) > max(0.5 * expected, 5.0)
        )
        if step:
            self.samples.clear()
        self.samples.append((nbytes, network_ms))
        self.observed += 1
        latency, per_byte = self._fit()
        a = 1.0 if step or self.observed == 1 else self.settings.alpha
        self.latency_ms += a * (latency - self.latency_ms)
        self.ms_per_byte += a * (per_byte - self.ms_per_byte)

    def predict(self, nbytes: int) -> float:
        return self.latency_ms + nbytes * self.ms_per_byte

    def _fit(self) -> tuple[float, float]:
        recent = list(self.samples)[-max(3, self.settings.link_window // 2) :]
        xs = [float(b) for b, _ in recent]
        ys = [t for _, t in recent]
        n = len(recent)
        mean_x, mean_y = sum(xs) / n, sum(ys) / n
        var_x = sum((x - mean_x) ** 2 for x in xs)
        if n >= 3 and max(xs) > 1.5 * min(xs) and var_x > 0:
            slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var_x
            slope = max(slope, 1e-7)
            intercept = max(0.0, mean_y - slope * mean_x)
            return intercept, slope
        # One payload size only: bandwidth is not identifiable; keep it, refit the latency.
        slope = self.ms_per_byte
        return max(0.0, mean_y - slope * mean_x), slope
