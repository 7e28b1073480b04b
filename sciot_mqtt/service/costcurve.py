"""The cost curve: the predicted latency of every split point. Pure arithmetic, no state.

Predicted latency of split point s (the device runs operators [0, s)):

    T(s) = device[0, s) + link latency + bytes(s) / bandwidth + edge queue + edge[s, N)   s < N
    T(N) = device[0, N)                                                               (local)

Its inputs are what the cost model (`decisions.py`) has learnt: the device's and the edge's
per-operator times and the link fit (`estimates.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CurveParts:
    """T(s) for s in 0..N in its parts (ms): what the device, the link, the edge's queue and
    the edge each take. `totals()` is the cost curve."""

    device: list[float]
    link: list[float]
    queue: list[float]
    edge: list[float]

    def totals(self) -> list[float]:
        return [
            d + lk + q + e
            for d, lk, q, e in zip(self.device, self.link, self.queue, self.edge, strict=True)
        ]


def curve_parts(
    device_ms: Sequence[float],
    edge_ms: Sequence[float],
    bytes_at: Sequence[int],
    *,
    latency_ms: float,
    ms_per_byte: float,
    queue_ms: float = 0.0,
) -> CurveParts:
    """The parts of T(s) for s in 0..N (see the module docstring)."""
    n = len(device_ms)
    if len(edge_ms) != n or len(bytes_at) != n + 1:
        raise ValueError("need N device times, N edge times and N + 1 byte counts")
    head = [0.0]
    for t in device_ms:
        head.append(head[-1] + t)
    tail = [0.0] * (n + 1)
    for s in range(n - 1, -1, -1):
        tail[s] = tail[s + 1] + edge_ms[s]
    link = [latency_ms + bytes_at[s] * ms_per_byte for s in range(n)] + [0.0]
    queue = [queue_ms] * n + [0.0]
    return CurveParts(head, link, queue, tail)


def cost_curve(
    device_ms: Sequence[float],
    edge_ms: Sequence[float],
    bytes_at: Sequence[int],
    *,
    latency_ms: float,
    ms_per_byte: float,
    queue_ms: float = 0.0,
) -> list[float]:
    """T(s) for s in 0..N (see the module docstring)."""
    parts = curve_parts(
        device_ms,
        edge_ms,
        bytes_at,
        latency_ms=latency_ms,
        ms_per_byte=ms_per_byte,
        queue_ms=queue_ms,
    )
    return parts.totals()


def best_split(curve: Sequence[float], bytes_at: Sequence[int]) -> int:
    """The cheapest split; ties go to fewer bytes on the wire, then to the later split."""
    return min(range(len(curve)), key=lambda s: (round(curve[s], 9), bytes_at[s], -s))
