"""The cost model's decisions, deterministically: probes, link checks, hysteresis, reasons."""

from __future__ import annotations

import itertools

from sciot_mqtt.service.decisions import (
    DecisionSettings,
    DeviceCostModel,
    with_hysteresis,
)


def test_hysteresis_keeps_the_current_split_for_small_gains() -> None:
    settings = DecisionSettings(rel_margin=0.1, abs_margin_ms=1.0)
    curve = [10.0, 9.5, 20.0]
    assert with_hysteresis(curve, [1, 1, 1], 0, settings) == (0, False)  # 0.5 ms: not worth it
    assert with_hysteresis([10.0, 8.5, 20.0], [1, 1, 1], 0, settings) == (1, True)
    assert with_hysteresis(curve, [1, 1, 1], None, settings) == (1, True)


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
