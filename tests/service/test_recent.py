"""The service's memory of recent `infer` requests (pure logic; the wire side is in
test_limits.py)."""

from __future__ import annotations

from sciot_mqtt.protocol import U32_MAX, InferResult, Tensor
from sciot_mqtt.service.recent import RecentRequests, Seen, digest


def answer(seq: int) -> InferResult:
    output = Tensor(index=0, dtype="int8", shape=[1], scale=0.1, zero_point=0, data=b"\x01")
    return InferResult(
        seq=seq,
        model="m",
        split=1,
        output=output,
        edge_ms=[],
        queue_ms=0,
        service_ms=0,
    )


def test_running_answered_conflict_and_other_sessions() -> None:
    recent = RecentRequests()
    d1, d2 = digest(b"one"), digest(b"two")
    assert recent.check(7, 1, d1) is Seen.NEW
    recent.start(7, 1, d1)
    assert recent.check(7, 1, d1) is Seen.RUNNING
    recent.finish(7, 1, answer(1))
    assert recent.check(7, 1, d1) is Seen.ANSWERED
    assert recent.answer_of(1) == answer(1)
    assert recent.check(7, 1, d2) is Seen.CONFLICT
    assert recent.check(8, 1, d1) is Seen.NEW  # a new connection numbers afresh


def test_a_forgotten_request_may_run_again() -> None:
    recent = RecentRequests()
    recent.start(1, 5, digest(b"x"))
    recent.finish(1, 5, None)  # e.g. overloaded: a redelivery should get another chance
    assert recent.check(1, 5, digest(b"x")) is Seen.NEW


def test_window_is_bounded_and_wrapping_seqs_do_not_alias() -> None:
    recent = RecentRequests(window=4)
    seqs = [U32_MAX - 2, U32_MAX - 1, U32_MAX, 0, 1, 2]
    for seq in seqs:
        assert recent.check(1, seq, digest(b"%d" % seq)) is Seen.NEW
        recent.start(1, seq, digest(b"%d" % seq))
        recent.finish(1, seq, answer(seq))
    assert len(recent) == 4
    assert recent.check(1, U32_MAX - 2, digest(b"%d" % (U32_MAX - 2))) is Seen.NEW  # evicted
    for seq in seqs[2:]:
        assert recent.check(1, seq, digest(b"%d" % seq)) is Seen.ANSWERED
