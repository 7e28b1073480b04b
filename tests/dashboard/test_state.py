"""What the dashboard makes of the messages its account reads (no broker: the messages are
built by the protocol's own classes, as the service builds them)."""

from __future__ import annotations

from sciot_mqtt.dashboard.state import HISTORY_S, FleetState
from sciot_mqtt.protocol import (
    DecisionRecord,
    DeviceCounts,
    DeviceTopic,
    InferenceWindow,
    MessageRates,
    ServiceState,
    ServiceStats,
    ServiceTopic,
    SplitExplanation,
    device_topic,
    service_topic,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def stats(offloaded: int, local: int, p50: float | None) -> bytes:
    return ServiceStats(
        instance="edge",
        uptime_s=10,
        devices=DeviceCounts(online=2, stale=0, offline=1),
        rates=MessageRates(rx=5, tx=5, errors=0),
        rx_total=50,
        tx_total=50,
        errors_total=0,
        window=InferenceWindow(
            interval_s=5.0,
            offloaded=offloaded,
            local=local,
            samples=offloaded + local,
            latency_p50_ms=p50,
            latency_p99_ms=None if p50 is None else 2 * p50,
            queue_ms=0.5,
        ),
    ).encode()


def test_stats_become_rates_latencies_and_shares_over_the_last_minutes() -> None:
    clock = Clock()
    fleet = FleetState(wall=clock)
    topic = service_topic("edge", ServiceTopic.STATS)
    assert fleet.apply(topic, stats(30, 10, 12.5))
    clock.now += 5
    assert fleet.apply(topic, stats(0, 0, None))
    (edge,) = fleet.snapshot()["instances"]
    assert edge["name"] == "edge" and edge["stats"]["devices"]["offline"] == 1
    (_, rate1, p50, p99, share1), (_, rate2, _, _, share2) = edge["points"]
    assert (rate1, p50, p99, share1) == (8.0, 12.5, 25.0, 0.75)  # 40 in 5 s, 30 of 40 at the edge
    assert (rate2, share2) == (0.0, None)  # nothing ran: no share to show
    clock.now += HISTORY_S + 1
    fleet.apply(topic, stats(5, 0, 1.0))
    assert [p[0] for p in fleet.snapshot()["instances"][0]["points"]] == [clock.now]


def test_explanations_state_and_what_is_not_the_dashboards() -> None:
    fleet = FleetState()
    explain = device_topic("cam-1", DeviceTopic.EXPLAIN)
    decision = DecisionRecord(decision=3, split=2, mode="offload", reason="split: 9.0 ms predicted")
    message = SplitExplanation(
        instance="edge", at=1.0, presence="online", model="fomo96", ops=25, decision=decision
    )
    version = fleet.version
    assert fleet.apply(explain, message.encode())
    assert fleet.apply(
        service_topic("edge", ServiceTopic.STATE),
        ServiceState(online=True, instance="edge").encode(),
    )
    snapshot = fleet.snapshot()
    assert snapshot["devices"]["cam-1"]["decision"]["split"] == 2
    assert snapshot["instances"][0]["online"] is True
    assert fleet.version == version + 2
    # Not the dashboard's topic, or not decodable: ignored, nothing changes.
    assert not fleet.apply(device_topic("cam-1", DeviceTopic.SPLIT), b"\x80")
    assert not fleet.apply(explain, b"\xc1")
    assert fleet.version == version + 2
    # A cleared retained explanation removes the device.
    assert fleet.apply(explain, b"")
    assert fleet.snapshot()["devices"] == {}
