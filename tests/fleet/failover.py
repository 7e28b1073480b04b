"""What the fleet's tests share: instances in this process, waits on devices, and the kill -9
failover scenario, run on one Mosquitto and on a broker cluster (devices on one node, the
instances on another).

No sleeps as synchronisation: every wait is on a condition with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from sciot_mqtt.device import Device
from sciot_mqtt.device.inference import InferenceRecord
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.protocol import ServiceState, ServiceTopic, service_topic
from sciot_mqtt.service import Service
from sciot_mqtt.settings import ServiceSettings
from sciot_mqtt.testing import MqttProbe
from sciot_mqtt.testing.plugin import DeviceFactory
from sciot_mqtt.transport import BrokerAddress
from tests.processes import spawn


def instance_settings(name: str, **changes: object) -> ServiceSettings:
    values: dict[str, object] = {
        "instance": name,
        "heartbeat_interval": 0.5,
        "stats_interval": 0.5,
        "offline_grace": 1.0,
        "keepalive": 5,
        "probe_probability": 0.0,  # the only probes are those of a device new to the fleet
    }
    return ServiceSettings(_env_file=None, **(values | changes))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def instances(
    address: BrokerAddress, packages: dict[str, ModelPackage], *specs: ServiceSettings
) -> AsyncIterator[dict[str, Service]]:
    async with contextlib.AsyncExitStack() as stack:
        out: dict[str, Service] = {}
        for spec in specs:
            service = await stack.enter_async_context(Service(spec, address, packages=packages))
            await service.connected(timeout=10)
            out[spec.instance] = service
        yield out
        for service in out.values():
            assert not service.internal_errors, service.internal_errors


async def until_each(
    devices: list[Device], predicate: Callable[[Device], bool], timeout: float
) -> float:
    """Wait until `predicate` holds for every device (checked on each change of each); the
    time it took."""
    start = time.monotonic()
    try:
        await asyncio.gather(*(d.wait_until(lambda d=d: predicate(d), timeout) for d in devices))
    except TimeoutError:
        state = {d.device_id: (d.mode, d.assignment and d.assignment.instance) for d in devices}
        raise AssertionError(f"not within {timeout} s: {state}") from None
    return time.monotonic() - start


async def until_any(
    devices: list[Device], predicate: Callable[[Device], bool], timeout: float
) -> None:
    """Wait until `predicate` holds for some device."""
    waits = [asyncio.create_task(d.wait_until(lambda d=d: predicate(d), timeout)) for d in devices]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    assert any(predicate(d) for d in devices), placement(devices)


def on(live: set[str]) -> Callable[[Device], bool]:
    """Offloading, to an instance of `live`."""
    return lambda d: (
        d.mode == "offload" and d.assignment is not None and d.assignment.instance in live
    )


def placement(devices: list[Device]) -> dict[str, str | None]:
    return {
        d.device_id: d.assignment.instance if d.assignment is not None else None for d in devices
    }


def up_argv(
    cli: list[str],
    broker: BrokerAddress,
    name: str,
    models: dict[str, ModelPackage],
    capacity: float = 1.0,
) -> list[str]:
    """`sciot-mqtt up` of one instance on `broker`, as a child process to kill -9."""
    cache = next(iter(models.values())).directory.parent
    return [
        *cli,
        "up",
        "--external-broker",
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--instance",
        name,
        "--capacity",
        str(capacity),
        "--heartbeat-interval",
        "0.5",
        "--stats-interval",
        "0.5",
        "--model-cache",
        str(cache),
    ]


async def kill_9_failover(
    devices_broker: BrokerAddress,
    instances_broker: BrokerAddress,
    sciot_models: dict[str, ModelPackage],
    sciot_device_factory: DeviceFactory,
    cli: list[str],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Three instances (one a child process, home of most devices) serve 12 devices streaming
    inferences; kill -9 of the child: its devices are re-assigned by the survivors within 5 s
    of its will, every inference is answered or finished on the device with a reason, and the
    survivors start from the victim's cost-model snapshots.

    The devices and the watcher of the will use `devices_broker`, the instances
    `instances_broker`: on a cluster, the will, the claims and the snapshots cross nodes.
    """
    argv = up_argv(cli, instances_broker, "victim", sciot_models, capacity=4)  # most devices
    state_topic = service_topic("victim", ServiceTopic.STATE)
    async with (
        MqttProbe(devices_broker, "sciot/v1/service/+/state", client_id="watch") as watch,
        instances(
            instances_broker, sciot_models, instance_settings("a"), instance_settings("b")
        ) as fleet,
        spawn(argv, cli_env, tmp_path, "victim") as victim,
    ):
        await watch.expect_message(ServiceState, state_topic, lambda s: s.online, timeout=60)
        # Pinned at split 12 so that every inference crosses an instance (the decision engine
        # would keep these host-speed devices local).
        devices = [
            await sciot_device_factory(f"dev-{i:02d}", broker=devices_broker, split=12)
            for i in range(12)
        ]
        await until_each(devices, on({"a", "b", "victim"}), 30)
        on_victim = [d for d in devices if d.assignment and d.assignment.instance == "victim"]
        assert len(on_victim) >= 4, placement(devices)

        images = synthetic_images(seed=5)
        records: dict[str, list[InferenceRecord]] = {d.device_id: [] for d in devices}
        calls: Counter[str] = Counter()
        progress = asyncio.Condition()
        running = True

        async def stream(device: Device) -> None:
            while running:
                calls[device.device_id] += 1
                record = await device.infer(next(images))
                records[device.device_id].append(record)
                async with progress:
                    progress.notify_all()

        async def until_records(predicate: Callable[[], bool], timeout: float) -> None:
            async with asyncio.timeout(timeout), progress:
                await progress.wait_for(predicate)

        def offloaded(device: Device, since: int = 0) -> int:
            return sum(1 for r in records[device.device_id][since:] if r.path == "offload")

        tasks = [asyncio.create_task(stream(d)) for d in devices]
        try:
            # Every device offloads a few times first: the victim learns their cost models.
            await until_records(lambda: all(offloaded(d) >= 3 for d in devices), 30)
            mark = watch.mark()
            victim.signal(signal.SIGKILL)
            await watch.expect_message(
                ServiceState, state_topic, lambda s: not s.online, since=mark, timeout=10
            )
            took = await until_each(devices, on({"a", "b"}), 10)
            assert took <= 5.0, f"re-assigned {took:.2f} s after the will"
            # They go on offloading, to the survivors.
            seen = {d.device_id: len(records[d.device_id]) for d in on_victim}
            await until_records(
                lambda: all(offloaded(d, seen[d.device_id]) > 0 for d in on_victim), 10
            )
        finally:
            running = False
            results = await asyncio.gather(*tasks, return_exceptions=True)
        # Nothing lost: every inference begun was answered or finished on the device with a
        # reason; none raised.
        assert not [r for r in results if isinstance(r, BaseException)], results
        for device in devices:
            assert len(records[device.device_id]) == calls[device.device_id]
            for record in records[device.device_id]:
                assert record.path in ("offload", "local", "fallback") and record.reason, record
        # The survivors started the victim's devices from its snapshots, not from scratch.
        restored = sum(s.fleet.restored for s in fleet.values())
        assert restored >= len(on_victim), restored
