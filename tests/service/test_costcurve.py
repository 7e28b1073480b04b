"""The cost curve, deterministically, with the ESP32-S3 reference profile of the zoo model."""

from __future__ import annotations

import numpy as np
import pytest

from sciot_mqtt.models import ModelPackage
from sciot_mqtt.service.costcurve import best_split, cost_curve, curve_parts

EDGE_MS_PER_OP = 0.05  # a fast edge: the whole model in ~1 ms, like this machine


@pytest.fixture(scope="module")
def esp32(sciot_models: dict[str, ModelPackage]) -> tuple[list[float], list[int]]:
    package = sciot_models["fomo96"]
    device_ms = [op.reference_ms for op in package.ops]
    assert all(t is not None for t in device_ms), "the zoo model maps the reference profile"
    return [float(t) for t in device_ms if t is not None], [b.nbytes for b in package.boundaries]


def oracle(device_ms: list[float], bytes_at: list[int], latency: float, kbps: float) -> int:
    """An independent brute force of T(s), written from the definition."""
    n = len(device_ms)
    costs = []
    for s in range(n + 1):
        head = float(np.sum(device_ms[:s]))
        if s == n:
            costs.append(head)
        else:
            costs.append(head + latency + bytes_at[s] * 8 / kbps + EDGE_MS_PER_OP * (n - s))
    return int(np.argmin(costs))


@pytest.mark.parametrize(
    ("latency_ms", "kbps", "expected"),
    [
        (5.0, 100_000.0, "edge only"),  # 5G-class link: ship the raw input
        (20.0, 5_000.0, "edge only"),  # LTE: 27.6 kB in 44 ms still beats 0.65 s of Conv1
        (40.0, 50.0, "split"),  # a crawl: only the 432-byte logits are worth sending
        (2000.0, 10.0, "device only"),  # hopeless link: keep everything on the device
    ],
)
def test_reference_profile_gives_the_analytic_optimum(
    esp32: tuple[list[float], list[int]], latency_ms: float, kbps: float, expected: str
) -> None:
    device_ms, bytes_at = esp32
    n = len(device_ms)
    curve = cost_curve(
        device_ms, [EDGE_MS_PER_OP] * n, bytes_at, latency_ms=latency_ms, ms_per_byte=8 / kbps
    )
    chosen = best_split(curve, bytes_at)
    assert chosen == oracle(device_ms, bytes_at, latency_ms, kbps)
    kind = "edge only" if chosen == 0 else "device only" if chosen == n else "split"
    assert kind == expected
    assert curve[n] == pytest.approx(sum(device_ms))  # T(N) has no link term


def test_curve_includes_queueing_and_latency_on_every_offloading_split() -> None:
    curve = cost_curve([1, 1], [2, 2], [100, 50, 10], latency_ms=3, ms_per_byte=0.01, queue_ms=4)
    assert curve == pytest.approx([0 + 3 + 1 + 4 + 4, 1 + 3 + 0.5 + 4 + 2, 2])


def test_ties_prefer_fewer_bytes_then_the_later_split() -> None:
    assert best_split([5.0, 5.0, 5.0], [300, 100, 100]) == 2
    assert best_split([5.0, 5.0, 9.0], [300, 100, 0]) == 1


def test_edges_zero_and_n_can_both_win() -> None:
    assert best_split([1.0, 2.0, 3.0], [10, 10, 0]) == 0
    assert best_split([3.0, 2.0, 1.0], [10, 10, 0]) == 2


def test_curve_parts_sum_to_the_cost_curve(esp32: tuple[list[float], list[int]]) -> None:
    device_ms, bytes_at = esp32
    n = len(device_ms)
    edge = [EDGE_MS_PER_OP] * n
    link = {"latency_ms": 12.0, "ms_per_byte": 8 / 2000.0, "queue_ms": 3.0}
    parts = curve_parts(device_ms, edge, bytes_at, **link)
    assert parts.totals() == pytest.approx(cost_curve(device_ms, edge, bytes_at, **link))
    # Split N runs everything on the device: nothing is sent, queued or run at the edge.
    assert (parts.link[n], parts.queue[n], parts.edge[n]) == (0.0, 0.0, 0.0)
    assert parts.device[n] == pytest.approx(sum(device_ms))
    assert parts.link[0] == pytest.approx(12.0 + bytes_at[0] * 8 / 2000.0)
    assert parts.device[0] == 0.0 and parts.edge[0] == pytest.approx(EDGE_MS_PER_OP * n)
