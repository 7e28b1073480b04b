"""One contract, two devices: every scenario runs against the Python device and the firmware.

The assertions are about the wire (topics, payload keys and values, their order) and the
device's own summary line, never about either implementation's internals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sciot_mqtt.broker import MosquittoBroker
from sciot_mqtt.protocol import (
    PROTOCOL_VERSION,
    Assign,
    Command,
    ServiceState,
    ServiceStats,
    SplitDecision,
)
from sciot_mqtt.service import Service
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.testing.probe import MqttProbe
from sciot_mqtt.transport import BrokerAddress
from tests.conformance.conftest import HB_INTERVAL, KINDS, DeviceRun, Launcher

pytestmark = pytest.mark.slow

PINNED = 7  # the service's split (conftest): two live tensors, a residual block
BIRTH_KEYS = {"protocol", "session", "kind", "models", "max_payload", "fw"}
HB_KEYS = {"seq", "session", "mode"}
INFER_KEYS = {"seq", "session", "model", "split", "decision", "tensors", "device_ms"}
TIMINGS_KEYS = {"seq", "session", "model", "reason", "device_ms"}
TENSOR_KEYS = {"index", "dtype", "shape", "scale", "zero_point", "data"}


def _device_id(kind: str) -> str:
    return f"{kind[:2]}-dev"


async def _publish(probe: MqttProbe, device_id: str, last: str, payload: bytes, **kw: Any) -> None:
    await probe.publish(f"sciot/v1/dev/{device_id}/{last}", payload, qos=1, **kw)


@pytest.mark.parametrize("kind", KINDS)
async def test_birth_assign_heartbeats_and_clean_exit(
    kind: str, launcher: Launcher, probe: MqttProbe, sciot_service: Service
) -> None:
    dev = await launcher.start(kind, _device_id(kind), count=4, interval=0.3)
    state = await dev.expect("state", lambda p: p["online"])
    birth = await dev.expect("birth")
    assert set(birth) == BIRTH_KEYS
    assert birth["session"] == state["session"]
    assert birth["protocol"] == PROTOCOL_VERSION and birth["models"] == ["fomo96"]
    assert birth["max_payload"] >= 4096
    # state online, then birth, then the first heartbeat: the order topics.md fixes
    await dev.expect("hb")
    mine = [m.topic.rsplit("/", 1)[1] for m in probe.messages if m.topic.startswith(dev.topic(""))]
    assert [t for t in mine if t in ("state", "birth", "hb")][:3] == ["state", "birth", "hb"]
    assign = await dev.expect("assign")
    assert assign["model"] == "fomo96" and assign["hb_interval_s"] == HB_INTERVAL
    hb = await dev.expect("hb", lambda p: p["mode"] == "offload")
    assert set(hb) == HB_KEYS and hb["session"] == birth["session"]
    # after --count it leaves by itself: retained online=false of its session
    gone = await dev.expect("state", lambda p: not p["online"], timeout=30)
    assert gone["session"] == birth["session"]
    summary = await dev.stop()
    # the first inference may run before the service's decision arrives (then it is local);
    # the others are cut at the pinned split and answered
    infers = dev.published("infer")
    assert len(infers) >= 3
    for infer in infers:
        assert set(infer) - {"rtt_ms", "rtt_seq"} == INFER_KEYS
        assert infer["split"] == PINNED and infer["session"] == birth["session"]
        assert len(infer["device_ms"]) == PINNED
        assert all(isinstance(t, float) and t >= 0 for t in infer["device_ms"])
        assert [t["index"] for t in infer["tensors"]] == [48, 49]
        assert all(set(t) == TENSOR_KEYS for t in infer["tensors"])
    assert sorted(r["seq"] for r in dev.published("result")) == [i["seq"] for i in infers]
    later = infers[-1]
    assert later["rtt_seq"] == later["seq"] - 1 and later["rtt_ms"] > 0  # previous round trip
    hbs = dev.published("hb")
    assert [h["seq"] for h in hbs] == list(range(hbs[0]["seq"], hbs[0]["seq"] + len(hbs)))
    assert summary["connects"] == 1 and summary["assignments"] >= 1
    assert summary["inference"]["offloaded"] == len(infers)
    assert summary["inference"]["all_match_local"] is True


@pytest.mark.parametrize("kind", KINDS)
async def test_retained_split_is_applied_at_once_on_reconnect(
    kind: str, launcher: Launcher, probe: MqttProbe
) -> None:
    """What the broker retains (service state, assign, split) is known at once on connect; the
    device offloads once an `assign` answers its new birth (topics.md, "Device modes"), and then
    follows the retained split without waiting for a new decision.

    The service here is the test: the retained messages of one that assigned this device
    earlier, then a live answer to the birth. Nobody answers the inference, so the device
    finishes it itself after the result timeout.
    """
    device_id = _device_id(kind)
    ghost = ServiceState(online=True, instance="ghost", protocol=1)
    await probe.publish("sciot/v1/service/ghost/state", ghost.encode(), retain=True)
    stale = Assign(
        model="fomo96", session=1, hb_interval_s=HB_INTERVAL, max_payload=262144, instance="ghost"
    )
    await _publish(probe, device_id, "assign", stale.encode(), retain=True)
    decision = SplitDecision(decision=77, model="fomo96", split=13, mode="offload", reason="t")
    await _publish(probe, device_id, "split", decision.encode(), retain=True)
    dev = await launcher.start(kind, device_id, count=1, result_timeout=1.0)
    dev.instance = "ghost"  # its requests go to the instance the assign names
    birth = await dev.expect("birth")
    # The retained assign (session 1) is not an answer to this birth: the one inference waits
    # for the live answer, so it is published after it (a device that offloaded on the stale
    # assign would have sent its only `infer` before the mark).
    mark = probe.mark()
    live = stale.model_copy(update={"session": birth["session"]})
    await _publish(probe, device_id, "assign", live.encode(), retain=True)
    infer = await dev.expect("infer", since=mark)
    assert infer["seq"] == 0  # the very first inference already follows the retained split
    assert infer["split"] == 13 and infer["decision"] == 77
    assert [t["index"] for t in infer["tensors"]] == [55]
    summary = await dev.stop()
    assert summary["inference"]["fallback"] == 1 and summary["inference"]["reasons"] == {
        "timeout": 1
    }
    assert summary["inference"]["all_match_local"] is True


@pytest.mark.parametrize("kind", KINDS)
async def test_split_change_probe_and_malformed_decision(
    kind: str, launcher: Launcher, probe: MqttProbe, sciot_service: Service
) -> None:
    device_id = _device_id(kind)
    dev = await launcher.start(kind, device_id, interval=0.1)
    await dev.expect("infer", lambda p: p["split"] == PINNED)
    # a new decision: the next inferences cut at 13
    change = SplitDecision(decision=100, model="fomo96", split=13, mode="offload", reason="t")
    await _publish(probe, device_id, "split", change.encode(), retain=True)
    moved = await dev.expect("infer", lambda p: p["split"] == 13)
    assert moved["decision"] == 100 and [t["index"] for t in moved["tensors"]] == [55]
    # a probe: exactly one timed local run, then back to split 13
    mark = probe.mark()
    probe_decision = SplitDecision(decision=101, model="fomo96", split=0, mode="probe", reason="p")
    await _publish(probe, device_id, "split", probe_decision.encode(), retain=True)
    timings = await dev.expect("timings", lambda p: p["reason"] == "probe", since=mark)
    assert set(timings) - {"rtt_ms", "rtt_seq"} == TIMINGS_KEYS
    assert len(timings["device_ms"]) == 25
    after = await dev.expect("infer", lambda p: p["seq"] > timings["seq"], since=mark)
    assert after["split"] == 13
    # a malformed decision is rejected; the device keeps cutting where it did
    bad = msgpack_bad_decision()
    mark = probe.mark()
    await _publish(probe, device_id, "split", bad, retain=True)
    kept = await dev.expect("infer", lambda p: p["seq"] > after["seq"] + 2, since=mark)
    assert kept["split"] == 13
    summary = await dev.stop()
    assert len([t for t in dev.published("timings") if t["reason"] == "probe"]) == 1
    assert summary["decisions_rejected"] >= 1
    assert summary["decisions"] >= 3


def msgpack_bad_decision() -> bytes:
    import msgpack

    packed: bytes = msgpack.packb(
        {"decision": 102, "model": "fomo96", "split": 3, "mode": "sideways", "reason": "x"}
    )
    return packed


@pytest.mark.parametrize("kind", KINDS)
async def test_rebirth_command(
    kind: str, launcher: Launcher, probe: MqttProbe, sciot_service: Service
) -> None:
    device_id = _device_id(kind)
    dev = await launcher.start(kind, device_id, interval=0.5)
    birth = await dev.expect("birth")
    await dev.expect("hb", lambda p: p["mode"] == "offload")
    mark = probe.mark()
    await _publish(probe, device_id, "cmd", Command(cmd="rebirth", reason="test").encode())
    state = await dev.expect("state", since=mark)
    again = await dev.expect("birth", since=mark)
    assert state == {"online": True, "session": birth["session"]}
    assert again["session"] == birth["session"]  # same connection, same session
    summary = await dev.stop()
    assert summary["rebirths"] == 1 and summary["connects"] == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_heartbeat_loss_and_return(
    kind: str, launcher: Launcher, probe: MqttProbe, sciot_service: Service
) -> None:
    """A frozen device goes stale then offline at the service; thawed, it is asked to rebirth."""
    device_id = _device_id(kind)
    # keepalive long enough that the broker keeps the connection while the process is stopped
    dev = await launcher.start(kind, device_id, interval=0.5, keepalive=60)
    birth = await dev.expect("birth")
    await dev.expect("hb", lambda p: p["mode"] == "offload")
    dev.pause()
    mark = probe.mark()
    local = await dev.expect("split", lambda p: p["mode"] == "local", since=mark, timeout=30)
    assert "stale" in local["reason"]
    await probe.expect_message(
        ServiceStats, "sciot/v1/service/conf/stats", lambda s: s.devices.offline == 1, since=mark
    )
    mark = probe.mark()
    dev.resume()
    await dev.expect("hb", since=mark)
    await dev.expect("cmd", lambda p: p["cmd"] == "rebirth", since=mark)
    again = await dev.expect("birth", since=mark)
    assert again["session"] == birth["session"]
    await dev.expect("split", lambda p: p["mode"] == "offload", since=mark)
    await dev.expect("infer", since=probe.mark())
    summary = await dev.stop()
    assert summary["rebirths"] >= 1 and summary["connects"] == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_service_offline_local_fallback_and_resume(
    kind: str,
    launcher: Launcher,
    probe: MqttProbe,
    sciot_broker: BrokerAddress,
    sciot_service_settings: ServiceSettings,
    sciot_models: dict[str, Any],
) -> None:
    device_id = _device_id(kind)
    async with Service(sciot_service_settings, sciot_broker, packages=sciot_models) as service:
        await service.connected(timeout=10)
        dev = await launcher.start(kind, device_id, interval=0.2)
        await dev.expect("result")
        mark = probe.mark()
    # the service left: its retained state says offline; the device runs alone
    await probe.expect_message(ServiceState, "sciot/v1/service/conf/state", lambda s: not s.online)
    await dev.expect("hb", lambda p: p["mode"] == "local", since=mark)
    timings = await dev.expect("timings", lambda p: p["reason"] == "local", since=mark)
    assert len(timings["device_ms"]) == 25 and "detections" not in timings
    mark = probe.mark()
    async with Service(sciot_service_settings, sciot_broker, packages=sciot_models) as service:
        await service.connected(timeout=10)
        await dev.expect("hb", lambda p: p["mode"] == "offload", since=mark)
        await dev.expect("result", since=mark)
        summary = await dev.stop()
    assert summary["fallbacks"] >= 1 and summary["resumes"] >= 2
    modes = [h["mode"] for h in dev.published("hb")]
    changes = [m for i, m in enumerate(modes) if i == 0 or m != modes[i - 1]]
    assert changes[-3:] == ["offload", "local", "offload"]
    assert summary["connects"] == 1
    assert summary["inference"]["local"] >= 1 and summary["inference"]["offloaded"] >= 2
    assert summary["inference"]["all_match_local"] is True


@pytest.mark.parametrize("kind", KINDS)
async def test_handover_to_another_instance_without_going_local(
    kind: str,
    launcher: Launcher,
    probe: MqttProbe,
    sciot_broker: BrokerAddress,
    sciot_service_settings: ServiceSettings,
    sciot_models: dict[str, Any],
) -> None:
    """A fleet (topics.md, "Fleet"): the serving instance stops cleanly, the other takes the
    device with an `assign` naming it, and the device sends its requests there from then on,
    offloading all along (another instance's state changes nothing for it)."""
    device_id = _device_id(kind)
    # A tiny capacity: the device hashes to the first instance and stays there until it stops.
    other = sciot_service_settings.model_copy(update={"instance": "conf2", "capacity": 0.001})
    async with Service(sciot_service_settings, sciot_broker, packages=sciot_models) as first:
        await first.connected(timeout=10)
        dev = await launcher.start(kind, device_id, interval=0.2)
        await dev.expect("result")
        assign = await dev.expect("assign")
        assert assign["instance"] == "conf"
        async with Service(other, sciot_broker, packages=sciot_models) as second:
            await second.connected(timeout=10)
            await dev.expect("hb", lambda p: p["mode"] == "offload", since=probe.mark())
            mark = probe.mark()
            await first.stop()  # a clean stop: it hands the device over first
            await dev.expect("assign", lambda p: p["instance"] == "conf2", since=mark)
            dev.instance = "conf2"
            await dev.expect("infer", since=mark)
            await dev.expect("result", since=mark)
            summary = await dev.stop()
    assert summary["fallbacks"] == 0, summary
    assert all(h["mode"] == "offload" for h in dev.published("hb", since=mark))
    assert summary["inference"]["all_match_local"] is True


@pytest.mark.parametrize("kind", KINDS)
async def test_broker_gone_local_then_reconnect_with_a_new_session(
    kind: str,
    launcher: Launcher,
    probe: MqttProbe,
    mosquitto: MosquittoBroker,
    sciot_service: Service,
) -> None:
    """The broker dies: the device keeps inferring alone, then comes back with a new session."""
    device_id = _device_id(kind)
    dev = await launcher.start(kind, device_id, interval=0.2)
    birth = await dev.expect("birth")
    await dev.expect("result")
    await mosquitto.kill()
    await mosquitto.start()  # same port, nothing retained (no persistence)
    async with MqttProbe(mosquitto.address, "sciot/v1/#", client_id="conformance-probe-2") as p2:
        again = DeviceRun(kind, device_id, dev.child, p2)
        reborn = await again.expect("birth", timeout=30)
        # a new connection is a new session, counted upward from the last one
        assert 0 < (reborn["session"] - birth["session"]) % 2**32 < 2**31
        await again.expect("hb", lambda p: p["mode"] == "offload", timeout=30)
        await again.expect("result", timeout=30)
        summary = await dev.stop()
    assert summary["connects"] >= 2 and summary["disconnects"] >= 1
    assert summary["fallbacks"] >= 1 and summary["resumes"] >= 2
    assert summary["session"] == reborn["session"]
    assert summary["inference"]["all_match_local"] is True


async def test_both_devices_send_identical_tensors_and_get_identical_results(
    launcher: Launcher, probe: MqttProbe, sciot_service: Service, sciot_models: dict[str, Any]
) -> None:
    """Same scene, same split: byte-identical `infer` tensors and results."""
    py = await launcher.start("python", "py-twin", count=3)
    fw = await launcher.start("firmware", "fw-twin", count=3)
    sent = {d.kind: await d.expect("infer") for d in (py, fw)}
    results = {d.kind: await d.expect("result") for d in (py, fw)}
    await py.stop()
    await fw.stop()
    a, b = sent["python"], sent["firmware"]
    assert a["split"] == b["split"] == PINNED
    assert set(a) == set(b)
    for ta, tb in zip(a["tensors"], b["tensors"], strict=True):
        assert ta == tb  # index, dtype, shape, scale, zero point and every byte
    ra, rb = results["python"], results["firmware"]
    assert ra["output"] == rb["output"] and set(ra) == set(rb)
    # and both equal a whole local run of the reference model on that scene
    from sciot_mqtt.models import SegmentRunner

    package = sciot_models["fomo96"]
    whole = SegmentRunner(package).run_whole(launcher.inputs.quantized)
    assert ra["output"]["data"] == np.asarray(whole).tobytes()


@pytest.mark.parametrize("split", [0, 4, 25])
async def test_both_devices_agree_at_other_splits(
    split: int, launcher: Launcher, probe: MqttProbe, sciot_service: Service
) -> None:
    """Edge-only (the input), a wide boundary, and device-only (timings of every op)."""
    py = await launcher.start("python", "py-twin", count=1, split=split)
    fw = await launcher.start("firmware", "fw-twin", count=1, split=split)
    last = "timings" if split == 25 else "infer"
    got = {d.kind: await d.expect(last) for d in (py, fw)}
    await py.stop()
    await fw.stop()
    a, b = got["python"], got["firmware"]
    assert set(a) == set(b)
    if split == 25:
        assert a["reason"] == b["reason"] == "pinned"
        assert len(a["device_ms"]) == len(b["device_ms"]) == 25
    else:
        assert a["split"] == b["split"] == split and "decision" not in a
        assert a["tensors"] == b["tensors"]


ECHO_KEYS = {"seq", "session", "sent_ms", "padding"}


async def test_both_devices_check_the_link_with_the_same_echoes(
    launcher: Launcher, probe: MqttProbe, sciot_service: Service
) -> None:
    """A link check (an offload predicted slower than the device's own device-only run):
    both devices serve users locally and send echoes beside, by the same budget rule
    (topics.md, rule 8), the service answers each, and the round trip goes up with a later
    `timings`."""
    runs = {
        kind: await launcher.start(kind, f"{kind[:2]}-echo", interval=0.1)
        for kind in ("python", "firmware")
    }
    for dev in runs.values():
        await dev.expect("infer", lambda p: p["split"] == PINNED)
        # device-only for a while: each learns its own device-only time
        local = SplitDecision(decision=100, model="fomo96", split=25, mode="local", reason="l")
        await _publish(probe, dev.device_id, "split", local.encode(), retain=True)
    for dev in runs.values():
        await dev.expect("timings", lambda p: p["reason"] == "local")
    mark = probe.mark()
    check = SplitDecision(
        decision=101,
        model="fomo96",
        split=0,
        mode="offload",
        reason="checking the link (device only so far)",
        predicted_ms=1e6,
    )
    for dev in runs.values():
        await _publish(probe, dev.device_id, "split", check.encode(), retain=True)
    echoes: dict[str, list[dict[str, Any]]] = {}
    for kind, dev in runs.items():
        first = await dev.expect("echo", since=mark)
        second = await dev.expect("echo", lambda p, e=first: p["seq"] > e["seq"], since=mark)
        echoes[kind] = [first, second]
        for echo in (first, second):
            assert set(echo) == ECHO_KEYS
            reply = await dev.expect("echo_reply", lambda p, e=echo: p["seq"] == e["seq"])
            assert reply["sent_ms"] == echo["sent_ms"]
        # the user's inference beside it ran locally; its round trip is reported later
        await dev.expect(
            "timings", lambda p, e=first: p["seq"] == e["seq"] and p["reason"] == "local"
        )
        # A round trip is reported once, with the next message: when the second echo's
        # reply lands before a message took the first's, the second's goes instead.
        echo_seqs = {first["seq"], second["seq"]}
        await dev.expect("timings", lambda p, s=echo_seqs: p.get("rtt_seq") in s, since=mark)
        assert all(i["seq"] not in (first["seq"], second["seq"]) for i in dev.published("infer"))
    summaries = {kind: await dev.stop() for kind, dev in runs.items()}
    # Same rule, same echoes: credit saved while offloading pays one bandwidth echo (the
    # padding the checked split's 9 KB allow), then one latency echo.
    py, fw = echoes["python"], echoes["firmware"]
    assert [len(e["padding"]) for e in py] == [len(e["padding"]) for e in fw] == [256, 0]
    assert all(set(e["padding"]) <= {0} for e in py + fw)
    for kind, dev in runs.items():
        summary = summaries[kind]
        assert summary["echoes_sent"] == len(dev.published("echo")) >= 2
        assert summary["echoes_answered"] >= 1
        sent = sum(len(msgpack_packed(e)) for e in dev.published("echo"))
        assert summary["measure_uplink_bytes"] == sent


def msgpack_packed(value: dict[str, Any]) -> bytes:
    import msgpack

    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed
