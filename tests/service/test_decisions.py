"""The cost model, deterministically, with the ESP32-S3 reference profile of the zoo model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sciot_mqtt.models import ModelPackage
from sciot_mqtt.service.decisions import (
    DecisionSettings,
    DeviceCostModel,
    LinkEstimate,
    OperatorTimes,
    best_split,
    cost_curve,
    curve_parts,
    with_hysteresis,
)

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


def test_hysteresis_keeps_the_current_split_for_small_gains() -> None:
    settings = DecisionSettings(rel_margin=0.1, abs_margin_ms=1.0)
    curve = [10.0, 9.5, 20.0]
    assert with_hysteresis(curve, [1, 1, 1], 0, settings) == (0, False)  # 0.5 ms: not worth it
    assert with_hysteresis([10.0, 8.5, 20.0], [1, 1, 1], 0, settings) == (1, True)
    assert with_hysteresis(curve, [1, 1, 1], None, settings) == (1, True)


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


def make_model(n: int = 3, budget: float = 0.0) -> tuple[DeviceCostModel, list[float]]:
    settings = DecisionSettings(measure_budget=budget, abs_margin_ms=0.5, window=3)
    model = DeviceCostModel(n, [1000] * n + [10], settings)
    return model, [0.1] * n


def test_new_device_is_probed_first_and_the_probe_waits_for_its_run() -> None:
    model, edge = make_model()
    assert model.decide(edge, 0.0).mode == "probe"
    model.on_request(0, 1, [5.0], 900)  # an inference already under way does not cancel it
    assert model.decide(edge, 0.0).mode == "probe"
    model.on_local_run([5.0, 5.0, 5.0])
    decision = model.decide(edge, 0.0, after_probe=True)
    assert decision.mode == "offload" and decision.split == 0 and decision.predicted_ms


def offload_once(model: DeviceCostModel, seq: int, split: int, rtt_ms: float) -> None:
    model.on_request(seq, split, [5.0] * split, 1000)
    model.on_result(seq, 100, service_ms=0.3)
    model.on_round_trip(seq, rtt_ms)


def test_a_refresh_that_could_change_the_split_is_paid_from_the_budget() -> None:
    # Device-only (15 ms) is close to offloading (about 11 ms): were the device's operators
    # faster, it would win, so their times are worth refreshing, as the budget allows.
    model, edge = make_model(budget=0.5)
    model.on_local_run([5.0, 5.0, 5.0])
    modes: list[str] = []
    for seq in range(30):
        decision = model.decide(edge, 0.0, after_probe=modes[-1:] == ["probe"])
        modes.append(decision.mode)
        if decision.mode == "probe":
            assert decision.reason == "refreshing ops 0..2"
            model.on_local_run([5.0, 5.0, 5.0], probe=True)
        else:
            offload_once(model, seq, decision.split, 0.3 + 10.0 + 1100 * 0.0008)
    assert modes[0] == "offload" and "probe" in modes
    assert all(not (a == b == "probe") for a, b in itertools.pairwise(modes))
    # Each refresh costs 15 ms of device time; half of about 11 ms per inference pays for
    # one every third inference or so, never more than the budget earned.
    assert model.budget.spent_ms <= 0.5 * 11.5 * modes.count("offload") + 1e-6
    assert modes.count("probe") >= 3


def test_no_refresh_when_it_could_not_change_the_decision_or_nothing_pays() -> None:
    # A device 20 times slower than offloading: even twice as fast, device-only loses.
    model, edge = make_model(budget=1.0)
    model.on_local_run([100.0, 100.0, 100.0])
    broke, _ = make_model(budget=0.0)
    broke.on_local_run([5.0, 5.0, 5.0])
    for seq in range(20):
        for m in (model, broke):
            decision = m.decide(edge, 0.0, after_probe=seq == 0)
            assert decision.mode == "offload", decision
            offload_once(m, seq, decision.split, 0.3 + 10.0 + 1100 * 0.0008)
    assert model.budget.spent_ms == broke.budget.spent_ms == 0


def test_a_local_device_checks_the_link_only_when_a_better_link_could_win() -> None:
    model, edge = make_model(budget=0.2)
    model.on_local_run([5.0, 5.0, 5.0])
    assert model.decide(edge, 0.0, after_probe=True).mode == "offload"
    for seq in range(6):  # a slow link (60 ms): local wins, a link 4x better would not
        offload_once(model, seq, 0, 0.3 + 60.0 + (1100 + seq) * 0.001)
        model.decide(edge, 0.0)
    modes = []
    for _ in range(40):
        model.on_local_run([5.0, 5.0, 5.0])
        modes.append(model.decide(edge, 0.0).mode)
    assert set(modes) == {"local"}  # 15 ms local against 15 ms at best: nothing to learn
    # A link that is only a little slow: a check could pay off, and is paid for, as often as
    # 5 % of every inference's time (15 ms local, 17.3 ms checking) pays 2.3 ms lost by each.
    hopeful, _ = make_model(budget=0.05)
    hopeful.on_local_run([5.0, 5.0, 5.0])
    hopeful.decide(edge, 0.0, after_probe=True)
    for seq in range(6):
        offload_once(hopeful, seq, 0, 0.3 + 16.0 + (1100 + seq) * 0.001)
        hopeful.decide(edge, 0.0)
    checks = []
    for _ in range(40):
        hopeful.on_local_run([5.0, 5.0, 5.0])
        decision = hopeful.decide(edge, 0.0)
        if decision.reason.startswith("checking the link"):
            checks.append(decision)
            offload_once(hopeful, 100 + len(checks), 0, 0.3 + 16.0 + 1100 * 0.001)
    assert len(checks) >= 5
    assert hopeful.budget.spent_ms <= hopeful.budget.earned_ms
    assert hopeful.budget.earned_ms < 0.05 * (46 * 17.4 + 40 * 15)


def test_round_trips_move_the_split_to_device_only_on_a_slow_link() -> None:
    model, edge = make_model()
    model.on_local_run([5.0, 5.0, 5.0])
    assert model.decide(edge, 0.0, after_probe=True).split == 0
    for seq in range(6):
        model.on_request(seq, 0, [], 1000 + 500 * seq)
        model.on_result(seq, 100, service_ms=0.3)
        model.on_round_trip(seq, 0.3 + 200.0 + (1100 + 500 * seq) * 0.01)
        decision = model.decide(edge, 0.0)
    assert (decision.mode, decision.split) == ("local", 3)
    assert "device only" in decision.reason


def test_a_probe_refreshes_times_that_moved_instead_of_blending_slowly() -> None:
    times = OperatorTimes(2, alpha=0.2, window=10)
    times.observe([250.0, 10.0])
    times.observe([1.0, 10.5], refresh=True)  # the chip behind the id got much faster
    assert times.ema == pytest.approx([1.0, 10.1])  # op 1 moved 5 %: blended as usual
    times.observe([2.0, 10.0])
    assert times.ema[0] == pytest.approx(1.2)


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


def test_the_reason_states_the_prediction_sent_with_it() -> None:
    """Every decision's reason names its own predicted_ms, also when hysteresis keeps a split
    whose prediction moved (the reason used to be kept from when the split last changed)."""
    model, edge = make_model()
    model.on_local_run([5.0, 5.0, 5.0])
    seen = []
    for seq in range(8):
        decision = model.decide(edge, 0.0, after_probe=seq == 0)
        assert decision.predicted_ms is not None
        assert f"{decision.predicted_ms:.1f} ms predicted" in decision.reason, decision
        seen.append(decision.predicted_ms)
        model.on_request(seq, decision.split, [5.0] * decision.split, 1000)
        model.on_result(seq, 100, service_ms=0.3)
        model.on_round_trip(seq, 0.3 + 2.0 + seq)  # a link that slows a little each time
    assert len(set(seen)) > 1, "the prediction never moved: the test proves nothing"


def test_measured_inferences_split_the_round_trip_into_link_and_service() -> None:
    heard = []
    settings = DecisionSettings(measure_budget=0.0)
    model = DeviceCostModel(3, [1000, 900, 800, 10], settings, on_measured=heard.append)
    model.on_request(1, 2, [4.0, 6.0], 800)
    model.on_result(1, 100, service_ms=1.5)
    model.on_round_trip(1, 21.5)
    model.on_local_run([5.0, 5.0, 5.0])
    offloaded, local = heard
    assert (offloaded.split, offloaded.device_ms, offloaded.total_ms) == (2, 10.0, 31.5)
    assert (offloaded.link_ms, offloaded.service_ms) == (20.0, 1.5)
    assert (local.split, local.total_ms, local.link_ms) == (3, 15.0, None)
    assert list(model.measured) == heard
