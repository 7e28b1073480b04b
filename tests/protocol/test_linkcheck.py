"""The echo budget (topics.md, rule 8): what a device may spend on link checks."""

from __future__ import annotations

from sciot_mqtt.protocol import Echo
from sciot_mqtt.protocol.linkcheck import (
    ECHO_LARGE_PADDING,
    ECHO_SHARE_DIVISOR,
    EchoBudget,
    echo_cost,
)


def _sizes(budget: EchoBudget, checked: int) -> tuple[int, int]:
    small = Echo(seq=5, session=70000, sent_ms=0.0, padding=b"")
    large = small.model_copy(update={"padding": bytes(budget.large_padding(checked))})
    return len(small.encode()), len(large.encode())


def test_nothing_is_spent_before_users_inferences_earned_it() -> None:
    budget = EchoBudget()
    assert budget.pay(*_sizes(budget, 9216)) is None


def test_echoes_never_exceed_a_tenth_of_users_bytes_plus_one_of_each_kind() -> None:
    budget = EchoBudget()
    user = spent = 0
    kinds = []
    for _ in range(500):
        budget.earn(240)  # an ESP32-class device's `timings`
        user += 240
        small, large = _sizes(budget, 9216)
        paid = budget.pay(small, large)
        if paid is not None:
            spent += large if paid else small
            kinds.append(paid)
    assert spent * ECHO_SHARE_DIVISOR <= user
    assert spent * ECHO_SHARE_DIVISOR > 0.8 * user  # and the budget is used
    # Both kinds, latency echoes far more often than bandwidth ones.
    assert kinds.count(True) >= 10 and kinds.count(False) > 4 * kinds.count(True)


def test_credit_earned_while_offloading_is_not_spent_in_a_burst() -> None:
    budget = EchoBudget()
    for _ in range(100):
        budget.earn(9300)  # raw 96x96 inputs offloaded
    small, large = _sizes(budget, 9216)
    assert budget.pay(small, large) is True
    assert budget.pay(small, large) is False
    assert budget.pay(small, large) is None  # one echo of each kind saved, no more


def test_the_bandwidth_echo_is_no_larger_than_what_the_checked_split_sends() -> None:
    assert EchoBudget.large_padding(100) == 100
    assert EchoBudget.large_padding(10_000) == ECHO_LARGE_PADDING
    budget = EchoBudget(latency=echo_cost(64), bandwidth=echo_cost(64))
    # Nothing to tell apart: the padded echo would be no larger, so a latency echo goes.
    assert budget.pay(48, 48) is False
