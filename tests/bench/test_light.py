"""Light devices (`bench throughput`'s load, reused by other benchmarks) against the real
service: the contract's handshake, then precomputed requests, every one answered."""

from __future__ import annotations

import asyncio
import time

from sciot_mqtt.bench.light import ANSWERED, LightDevice
from sciot_mqtt.bench.throughput import prepare_workload
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.service import Service
from sciot_mqtt.transport import BrokerAddress


async def test_light_devices_handshake_then_every_request_is_answered(
    sciot_broker: BrokerAddress, sciot_service: Service, sciot_models: dict[str, ModelPackage]
) -> None:
    package = sciot_models["fomo96"]
    workload = prepare_workload(package, 12, frames=2)
    devices = [
        LightDevice(f"light-{i}", sciot_broker, "fomo96", workload.templates, 3, 10.0)
        for i in range(2)
    ]
    loop = asyncio.get_running_loop()
    go: asyncio.Future[tuple[float, float]] = loop.create_future()
    readies = [asyncio.Event() for _ in devices]
    runs = [
        asyncio.create_task(d.run(ready, go)) for d, ready in zip(devices, readies, strict=True)
    ]
    # Ready means assigned: the service answered this session's birth.
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 10)
    assert all(sciot_service.registry.get(d.device_id) is not None for d in devices)
    start = time.time()
    go.set_result((start, start + 0.5))  # a bounded load, not a wait
    await asyncio.wait_for(asyncio.gather(*runs), 20)
    requests = [r for d in devices for r in d.requests]
    assert len(requests) >= 2 * 3  # every lane sent at least once
    assert all(r.outcome == ANSWERED and r.latency_ms is not None for r in requests)
    await sciot_service.wait_until(
        lambda: sciot_service.counters.answered == len(requests), timeout=5
    )
