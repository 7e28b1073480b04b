"""A swarm in process against a real service: devices offload, churn, crash; nothing lost."""

from __future__ import annotations

import pytest

from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import DeviceState, DeviceTopic, device_topic
from sciot_mqtt.service import Service
from sciot_mqtt.service.registry import Presence
from sciot_mqtt.swarm import Mix, SwarmWorker, plan_devices
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory
from sciot_mqtt.transport import BrokerAddress


def mix(**fields: object) -> Mix:
    base: dict[str, object] = {
        "compute": {"host": 1},
        "links": {"loopback": 1},
        "workload": {"arrivals": "fixed", "rate_hz": 5},
        "churn": {"join_over_s": 0},
        "heartbeat_interval": 0.5,
    }
    return Mix.model_validate(base | fields)


async def test_devices_share_threads_and_every_inference_is_accounted_for(
    sciot_broker: BrokerAddress,
    sciot_service: Service,
    sciot_models: dict[str, ModelPackage],
) -> None:
    swarm_mix = mix(split=6)
    plans = plan_devices(swarm_mix, 6)
    worker = SwarmWorker(
        plans,
        swarm_mix,
        sciot_models,
        {"loopback": sciot_broker},
        emulate_links=True,
        threads=2,
        verify_every=3,
    )
    async with worker:
        await worker.wait_until(
            lambda: worker.states and set(worker.states.values()) == {"offload"}, timeout=30
        )
        # Inferences started before a device was told to offload run locally: how many
        # depends on the machine's load, so score only those started after all offload.
        before = {p.id: -1 for p in plans}
        for row in worker.rows:
            before[row.device] = max(before[row.device], row.seq)
        started_before = worker.started
        await worker.wait_until(lambda: worker.started >= started_before + 46, timeout=60)
    assert worker.lost == 0
    assert worker.started == len(worker.rows) >= 40
    assert set(worker.states.values()) == {"stopped"}
    # Each device may have one inference under way when it turned to offload.
    later = [r for r in worker.rows if r.seq > before[r.device] + 1]
    answered = [r for r in later if r.path == "offload"]
    assert len(later) >= 30 and len(answered) >= 0.9 * len(later)
    assert {r.split for r in answered} == {6}
    assert {r.device for r in answered} == {p.id for p in plans}
    checked = [r for r in worker.rows if r.ok is not None]
    assert checked and all(r.ok for r in checked)
    assert all(r.sent_bytes > 0 and r.transfer_ms is not None for r in answered)


async def test_churn_leaves_and_crashes_lose_nothing(
    sciot_broker: BrokerAddress,
    sciot_service: Service,
    sciot_models: dict[str, ModelPackage],
) -> None:
    # Every device leaves or crashes about once a second, and is back 0.2 s later.
    swarm_mix = mix(
        churn={"join_over_s": 0, "leave_per_min": 30, "crash_per_min": 30, "rejoin_after_s": 0.2}
    )
    worker = SwarmWorker(
        plan_devices(swarm_mix, 4),
        swarm_mix,
        sciot_models,
        {"loopback": sciot_broker},
        emulate_links=True,
    )
    async with worker:
        await worker.wait_until(
            lambda: worker.crashes >= 3 and worker.leaves >= 3 and worker.joins >= 10, timeout=60
        )
        await worker.wait_until(lambda: len(worker.rows) >= 20, timeout=60)
    assert worker.lost == 0
    failed = [r for r in worker.rows if r.path == "failed"]
    assert all(r.reason == "device crashed" for r in failed)


async def test_a_crashed_device_leaves_its_will(
    sciot_broker: BrokerAddress,
    sciot_service: Service,
    sciot_device_factory: DeviceFactory,
    sciot_probe: MqttProbe,
) -> None:
    device = await sciot_device_factory("crasher")
    await device.wait_until(lambda: device.mode == "offload", timeout=20)
    session = device.session
    mark = sciot_probe.mark()
    await device.crash()
    will = await sciot_probe.expect_message(
        DeviceState,
        device_topic("crasher", DeviceTopic.STATE),
        lambda s: not s.online,
        timeout=20,
        since=mark,
    )
    assert will.session == session  # the broker published the will: the device could not

    def offline() -> bool:
        record = sciot_service.registry.get("crasher")
        return record is not None and record.presence is Presence.OFFLINE

    await sciot_service.wait_until(offline, timeout=20)


@pytest.mark.parametrize("arrivals", ["poisson", "burst"])
async def test_open_loop_arrivals_queue_when_a_device_is_busy(
    sciot_broker: BrokerAddress,
    sciot_service: Service,
    sciot_models: dict[str, ModelPackage],
    arrivals: str,
) -> None:
    swarm_mix = mix(workload={"arrivals": arrivals, "rate_hz": 20, "burst_size": 4}, split=12)
    worker = SwarmWorker(
        plan_devices(swarm_mix, 2),
        swarm_mix,
        sciot_models,
        {"loopback": sciot_broker},
        emulate_links=True,
    )
    async with worker:
        await worker.wait_until(lambda: len(worker.rows) >= 30, timeout=60)
    assert worker.lost == 0
    if arrivals == "burst":
        # Requests of one burst arrive together: all but the first wait for the one before.
        assert max(r.queue_ms for r in worker.rows) > 0
