"""Outages on Mosquitto with persistence on: the broker restarts, the service is killed -9
or hangs, a device crashes without disconnecting. Nothing offloaded is lost: every `infer`
that reached the broker ends answered or finished on the device with a reason; devices fall
back to local within 2 s of losing the service and offload again within 5 s of its return;
the service rebuilds its state from retained topics.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from sciot_mqtt.broker import MosquittoBroker
from sciot_mqtt.device import Device
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import (
    Assign,
    DeviceTopic,
    InferResult,
    ServiceState,
    ServiceStats,
    ServiceTopic,
    SplitDecision,
    device_topic,
    service_topic,
)
from sciot_mqtt.service import Presence, Service
from sciot_mqtt.testing import MqttProbe
from tests.hardening.support import (
    OUTAGE_REASONS,
    InferenceLoop,
    answered_seqs_on_wire,
    assert_accounted,
    device_settings,
    infer_seqs_on_wire,
    packages_of,
    service_settings,
)
from tests.processes import spawn

FALLBACK_BOUND_S = 2.0  # issue 7: local within 2 s of losing the service
RESUME_BOUND_S = 5.0  # issue 7: offloading again within 5 s of its return
OUTAGE_S = 4.0  # broker down this long: backoffs (0.2 s doubling) reach their 2 s cap
STATE = service_topic("edge", ServiceTopic.STATE)
STATS = service_topic("edge", ServiceTopic.STATS)


def mosquitto() -> MosquittoBroker:
    try:
        return MosquittoBroker(persistence=True)
    except ConfigurationError as exc:
        pytest.skip(str(exc))


async def wait_mode(devices: list[Device], mode: str, since: float, bound: float) -> None:
    """All devices in `mode` no later than `bound` seconds after `since` (monotonic)."""
    try:
        await _wait_mode(devices, mode, since, bound)
    finally:
        print(f"{mode} after {time.monotonic() - since:.2f}s (bound {bound}s)")


async def _wait_mode(devices: list[Device], mode: str, since: float, bound: float) -> None:
    for device in devices:
        remaining = since + bound - time.monotonic()
        try:
            await device.wait_until(lambda d=device: d.mode == mode, timeout=max(remaining, 0))
        except TimeoutError:
            raise AssertionError(
                f"{device.device_id} not {mode} within {bound}s (still {device.mode})"
            ) from None


def assert_service_accounting(service: Service) -> None:
    c = service.counters
    assert c.infer == c.answered + c.infer_rejected + c.duplicates + c.lost + c.running, c
    assert service.internal_errors == []


async def test_broker_restart_loses_no_inference(sciot_models: dict[str, ModelPackage]) -> None:
    broker = mosquitto()
    packages = packages_of(sciot_models)
    async with (
        broker,
        Service(service_settings(), broker.address, packages=packages) as service,
        Device(device_settings("br-a"), broker.address, packages=packages) as a,
        Device(device_settings("br-b"), broker.address, packages=packages) as b,
    ):
        devices = [a, b]
        await wait_mode(devices, "offload", time.monotonic(), 15)
        loops = [InferenceLoop(d, seed=i) for i, d in enumerate(devices)]
        async with loops[0].running(), loops[1].running():
            probe = MqttProbe(broker.address, "sciot/v1/#", client_id="probe-before")
            async with probe:
                for loop in loops:
                    await loop.wait_for(lambda r: r.path == "offload", 3, timeout=15)
            seen_before = list(probe.messages)

            await broker.kill()
            killed = time.monotonic()
            await wait_mode(devices, "local", killed, FALLBACK_BOUND_S)
            marks = [len(loop.records) for loop in loops]
            for loop, mark in zip(loops, marks, strict=True):
                await loop.wait_for(lambda r: r.path == "local", 3, after=mark, timeout=15)
            # Not a wait for anything: the length of the outage under test, long enough for
            # every reconnect backoff to reach its cap.
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))

            await broker.start()
            back = time.monotonic()
            await wait_mode(devices, "offload", back, RESUME_BOUND_S)
            async with MqttProbe(broker.address, "sciot/v1/#", client_id="probe-after") as after:
                marks = [len(loop.records) for loop in loops]
                for loop, mark in zip(loops, marks, strict=True):
                    await loop.wait_for(lambda r: r.path == "offload", 3, after=mark, timeout=15)
                # Retained topics survived the crash in Mosquitto's persistence file.
                for device in devices:
                    assign = await after.expect_message(
                        Assign, device_topic(device.device_id, DeviceTopic.ASSIGN)
                    )
                    assert assign.model == "fomo96"
                    await after.expect_message(
                        SplitDecision, device_topic(device.device_id, DeviceTopic.SPLIT)
                    )
            seen = seen_before + list(after.messages)

        for loop in loops:
            assert_accounted(loop, infer_seqs_on_wire(seen, loop.device.device_id))
            # No device offloaded into the void while the retained service state still said
            # `online` after the restart: it waited for a live answer to its birth.
            assert all(r.reason != "timeout" for r in loop.records)
            record = service.registry.get(loop.device.device_id)
            assert record is not None and record.registered
            assert record.presence is Presence.ONLINE and record.session == loop.device.session
        assert_service_accounting(service)


async def test_service_killed_and_restarted_loses_no_inference(
    sciot_models: dict[str, ModelPackage],
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    broker = mosquitto()
    packages = packages_of(sciot_models)
    argv = [
        *cli,
        "up",
        "--external-broker",
        "--heartbeat-interval",
        "0.5",
        "--stats-interval",
        "0.5",
    ]
    async with broker:
        argv += ["--port", str(broker.address.port)]
        async with (
            MqttProbe(broker.address, "sciot/v1/#") as probe,
            Device(device_settings("sk-a"), broker.address, packages=packages) as a,
            Device(device_settings("sk-b"), broker.address, packages=packages) as b,
        ):
            devices = [a, b]
            loops = [InferenceLoop(d, seed=i) for i, d in enumerate(devices)]
            async with spawn(argv, cli_env, tmp_path, "first") as first:
                first_state = await probe.expect_message(
                    ServiceState, STATE, lambda s: s.online, timeout=30
                )
                await wait_mode(devices, "offload", time.monotonic(), 15)
                async with loops[0].running(), loops[1].running():
                    for loop in loops:
                        await loop.wait_for(lambda r: r.path == "offload", 3, timeout=15)
                    first.signal(signal.SIGKILL)
                    killed = time.monotonic()
                    await first.wait(timeout=5)
                    await wait_mode(devices, "local", killed, FALLBACK_BOUND_S)
                    marks = [len(loop.records) for loop in loops]
                    for loop, mark in zip(loops, marks, strict=True):
                        await loop.wait_for(lambda r: r.path == "local", 2, after=mark, timeout=15)
                    decisions_before = {d.device_id: d.decision for d in devices}

                    mark = probe.mark()
                    async with spawn(argv, cli_env, tmp_path, "second") as second:
                        await probe.expect_message(
                            ServiceState,
                            STATE,
                            lambda s: s.online and s.started_at != first_state.started_at,
                            since=mark,
                            timeout=30,
                        )
                        back = time.monotonic()
                        await wait_mode(devices, "offload", back, RESUME_BOUND_S)
                        marks = [len(loop.records) for loop in loops]
                        for loop, mark_ in zip(loops, marks, strict=True):
                            await loop.wait_for(
                                lambda r: r.path == "offload", 3, after=mark_, timeout=15
                            )
                        # Rebuilt from retained topics: both devices known and online, and
                        # their retained decisions recovered (sent again as they were, or
                        # numbered on from them), never started afresh.
                        await probe.expect_message(
                            ServiceStats,
                            STATS,
                            lambda s: s.devices.online == 2 and s.devices.offline == 0,
                            since=mark,
                            timeout=10,
                        )
                        for device in devices:
                            topic = device_topic(device.device_id, DeviceTopic.SPLIT)
                            again = await probe.expect_message(SplitDecision, topic, since=mark)
                            before = decisions_before[device.device_id]
                            assert before is not None and again.decision >= before.decision
                            if again.decision == before.decision:
                                assert again == before
                        second.signal(signal.SIGTERM)
                        assert await second.wait(timeout=10) == 0, second.output()
            for loop in loops:
                assert_accounted(loop, infer_seqs_on_wire(probe.messages, loop.device.device_id))
                assert loop.count(lambda r: r.path == "offload") >= 6
                assert loop.device.summary().rebirths >= 1


async def test_hung_service_is_left_and_taken_back(
    sciot_models: dict[str, ModelPackage],
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """SIGSTOP of the service: its connection stays open, so no will comes before its
    keepalive runs out. The device stops offloading after its first unanswered request and
    offloads again once the service answers the birth it sent meanwhile."""
    broker = mosquitto()
    packages = packages_of(sciot_models)
    timeout = 1.5  # result_timeout: with it, a hung service is left within the 2 s bound
    async with broker:
        argv = [
            *cli,
            "up",
            "--external-broker",
            "--port",
            str(broker.address.port),
            "--heartbeat-interval",
            "0.5",
        ]
        async with (
            MqttProbe(broker.address, "sciot/v1/#") as probe,
            spawn(argv, cli_env, tmp_path, "up") as up,
            Device(
                device_settings("hung-a", result_timeout=timeout), broker.address, packages=packages
            ) as device,
        ):
            await probe.expect_message(ServiceState, STATE, lambda s: s.online, timeout=30)
            await wait_mode([device], "offload", time.monotonic(), 15)
            loop = InferenceLoop(device)
            async with loop.running():
                await loop.wait_for(lambda r: r.path == "offload", 3, timeout=15)
                up.signal(signal.SIGSTOP)
                stopped = time.monotonic()
                await wait_mode([device], "local", stopped, FALLBACK_BOUND_S)
                mark = len(loop.records)
                await loop.wait_for(lambda r: r.path == "local", 3, after=mark, timeout=15)

                up.signal(signal.SIGCONT)
                await wait_mode([device], "offload", time.monotonic(), RESUME_BOUND_S)
                mark = len(loop.records)
                await loop.wait_for(lambda r: r.path == "offload", 3, after=mark, timeout=15)
            up.signal(signal.SIGTERM)
            assert await up.wait(timeout=10) == 0, up.output()
        assert device.summary().unanswered == 1
        assert_accounted(
            loop, infer_seqs_on_wire(probe.messages, "hung-a"), OUTAGE_REASONS | {"timeout"}
        )
        assert loop.count(lambda r: r.reason == "timeout") == 1


async def test_device_crash_without_disconnect(
    sciot_models: dict[str, ModelPackage],
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """kill -9 of a device mid-stream: the service answers all it received, marks it offline
    by its will, keeps serving the others, and takes the device back when it returns."""
    broker = mosquitto()
    packages = packages_of(sciot_models)
    crashy = "crashy"
    async with (
        broker,
        Service(service_settings(), broker.address, packages=packages) as service,
        MqttProbe(broker.address, "sciot/v1/#") as probe,
        Device(device_settings("steady"), broker.address, packages=packages) as steady,
    ):
        await service.connected(timeout=10)
        argv = [
            *cli,
            "device",
            "--id",
            crashy,
            "--port",
            str(broker.address.port),
            "--split",
            "3",
            "--count",
            "100000",
            "--wait",
            "30",
        ]
        result_topic = device_topic(crashy, DeviceTopic.RESULT)
        loop = InferenceLoop(steady)
        await wait_mode([steady], "offload", time.monotonic(), 15)
        async with loop.running():
            async with spawn(argv, cli_env, tmp_path, "crashy-1") as first:
                position = 0
                for _ in range(5):
                    found = await probe.expect(result_topic, since=position, timeout=30)
                    position = probe.messages.index(found) + 1
                record = service.registry.get(crashy)
                assert record is not None and record.registered
                old_session = record.session
                first.signal(signal.SIGKILL)
                await first.wait(timeout=5)
            await service.wait_until(lambda: record.presence is Presence.OFFLINE, timeout=5)

            # Every `infer` that reached the broker was answered (the service never died).
            sent = infer_seqs_on_wire(probe.messages, crashy)
            assert len(sent) >= 5
            await service.wait_until(lambda: service.counters.running == 0, timeout=10)
            answered = answered_seqs_on_wire(probe.messages, crashy)
            assert sent <= answered, sorted(sent - answered)

            mark = probe.mark()
            async with spawn(argv, cli_env, tmp_path, "crashy-2") as second:
                assign = await probe.expect_message(
                    Assign,
                    device_topic(crashy, DeviceTopic.ASSIGN),
                    lambda a: a.session != old_session,
                    since=mark,
                    timeout=30,
                )
                back = time.monotonic()
                await probe.expect_message(InferResult, result_topic, since=mark, timeout=30)
                assert time.monotonic() - back <= RESUME_BOUND_S
                assert record.session == assign.session and record.presence is Presence.ONLINE
                second.signal(signal.SIGINT)
                assert await second.wait(timeout=15) == 0, second.output()
            marks = len(loop.records)
            await loop.wait_for(lambda r: r.path == "offload", 2, after=marks, timeout=15)

        assert sum(1 for r in service.registry if r.device_id == crashy) == 1
        # The well-behaved device never noticed.
        assert all(r.path == "offload" for r in loop.records), loop.device.summary()
        assert_accounted(loop, infer_seqs_on_wire(probe.messages, "steady"))
        assert_service_accounting(service)
