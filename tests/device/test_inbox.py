"""What a device keeps of the service's messages, without a broker (the inbox does no I/O;
the lifecycle over a real broker is tested in tests/service/)."""

from __future__ import annotations

import structlog

from sciot_mqtt.device.inbox import ServiceInbox
from sciot_mqtt.device.report import DeviceSummary
from sciot_mqtt.protocol import (
    Assign,
    Command,
    DeviceTopic,
    ServiceState,
    ServiceTopic,
    SplitDecision,
    device_topic,
    service_topic,
)
from sciot_mqtt.transport import Inbound

DEVICE = "cam-1"


def inbox() -> tuple[ServiceInbox, DeviceSummary]:
    summary = DeviceSummary(DEVICE, 7, "local", None)
    log = structlog.get_logger("test")
    box = ServiceInbox(DEVICE, models=["fomo96"], max_payload=65536, summary=summary, log=log)
    return box, summary


def to_device(kind: DeviceTopic, payload: bytes) -> Inbound:
    return Inbound(device_topic(DEVICE, kind), payload, retain=False, qos=1)


def assign(model: str = "fomo96", session: int = 7, hb: float = 5.0) -> Inbound:
    message = Assign(model=model, session=session, hb_interval_s=hb, max_payload=4096, instance="e")
    return to_device(DeviceTopic.ASSIGN, message.encode())


def state(online: bool) -> Inbound:
    payload = ServiceState(online=online, instance="e", started_at=1.0).encode()
    return Inbound(service_topic("e", ServiceTopic.STATE), payload, retain=True, qos=1)


def test_only_an_assign_answering_this_session_makes_the_assignment_live() -> None:
    box, summary = inbox()
    assert box.receive(assign(session=6), session=7, channel=None) == "heartbeat"
    assert box.assignment is not None and not box.live  # retained, of an older session
    assert box.receive(assign(session=7), session=7, channel=None) is None  # same interval
    assert box.live and summary.assignments == 2
    assert box.receive(assign(session=7, hb=1.0), session=7, channel=None) == "heartbeat"


def test_an_assign_of_a_model_the_device_lacks_is_refused() -> None:
    box, summary = inbox()
    assert box.receive(assign(model="other"), session=7, channel=None) is None
    assert box.assignment is None and not box.live and summary.assignments == 0


def test_the_serving_instance_must_be_online() -> None:
    box, _ = inbox()
    box.receive(state(True), session=7, channel=None)
    box.receive(assign(), session=7, channel=None)
    assert box.service_online
    box.receive(state(False), session=7, channel=None)
    assert not box.service_online
    box.new_connection()
    assert not box.live


def test_a_probe_is_not_the_followed_decision_and_a_bad_one_is_counted() -> None:
    box, summary = inbox()
    follow = SplitDecision(decision=1, model="fomo96", split=3, mode="offload", reason="r")
    probe = SplitDecision(decision=2, model="fomo96", split=9, mode="probe", reason="p")
    box.receive(to_device(DeviceTopic.SPLIT, follow.encode()), session=7, channel=None)
    box.receive(to_device(DeviceTopic.SPLIT, probe.encode()), session=7, channel=None)
    assert box.decision == probe and box.followed == follow
    assert box.receive(to_device(DeviceTopic.SPLIT, b"\xc1"), session=7, channel=None) is None
    assert summary.decisions == 2 and summary.decisions_rejected == 1
    assert box.decision == probe  # a malformed decision changes nothing


def test_rebirth_asks_for_an_announce_and_unanswered_only_counts_once() -> None:
    box, summary = inbox()
    rebirth = Command(cmd="rebirth", reason="restarted").encode()
    assert box.receive(to_device(DeviceTopic.CMD, rebirth), session=7, channel=None) == "announce"
    assert summary.rebirths == 1
    box.receive(assign(), session=7, channel=None)
    assert box.unanswered() and not box.live
    assert not box.unanswered() and summary.unanswered == 1
