"""What the cost model learns from measurements: the link fit and the operator times."""

from __future__ import annotations

import numpy as np
import pytest

from sciot_mqtt.service.decisions import DecisionSettings
from sciot_mqtt.service.estimates import LinkEstimate, OperatorTimes


def test_link_fit_recovers_latency_and_bandwidth() -> None:
    link = LinkEstimate(DecisionSettings(alpha=1.0))
    for nbytes in (1_000, 20_000, 5_000, 40_000, 2_000, 30_000):
        link.observe(nbytes, 12.0 + nbytes * 8 / 2_000)  # 12 ms + 2 Mbit/s
    assert link.latency_ms == pytest.approx(12.0, rel=1e-6)
    assert link.kbps == pytest.approx(2_000, rel=1e-6)


def test_link_with_one_payload_size_refits_latency_only() -> None:
    link = LinkEstimate(DecisionSettings(alpha=1.0, prior_kbps=8_000))
    for _ in range(5):
        link.observe(4_000, 30.0)
    assert link.kbps == pytest.approx(8_000)
    assert link.latency_ms == pytest.approx(30.0 - 4_000 * 8 / 8_000)


def test_operator_variance_marks_the_op_and_the_next() -> None:
    times = OperatorTimes(4, alpha=0.2, window=10)
    rng = np.random.default_rng(1)
    for _ in range(10):
        times.observe([10.0, 10 * (1 + 0.5 * rng.standard_normal()), 10.0, 10.0])
    assert times.unstable(0.15) == {1, 2}
    assert times.ema[0] == pytest.approx(10.0)


def test_a_probe_refreshes_times_that_moved_instead_of_blending_slowly() -> None:
    times = OperatorTimes(2, alpha=0.2, window=10)
    times.observe([250.0, 10.0])
    times.observe([1.0, 10.5], refresh=True)  # the chip behind the id got much faster
    assert times.ema == pytest.approx([1.0, 10.1])  # op 1 moved 5 %: blended as usual
    times.observe([2.0, 10.0])
    assert times.ema[0] == pytest.approx(1.2)
