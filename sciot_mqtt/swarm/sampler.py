"""The swarm's once-a-second samples: service and broker processes, broker counters, stats."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from sciot_mqtt._tasks import finish
from sciot_mqtt.protocol import ServiceStats, ServiceTopic, service_topic
from sciot_mqtt.swarm.edge import Edge
from sciot_mqtt.swarm.live import SwarmTotals
from sciot_mqtt.transport import MqttSession

__all__ = ["Sampler"]


class Sampler:
    """Once a second: the service process's CPU, memory and descriptors, the broker's
    message counters ($SYS, Mosquitto) and the service's own `stats`."""

    def __init__(self, edge: Edge, totals: SwarmTotals) -> None:
        self.edge = edge
        self.samples: list[dict[str, Any]] = []
        self.t0 = time.time()  # the swarm's start, once the workers are ready
        self.worker_pids: list[int] = []
        self._totals = totals
        self._sys: dict[str, float] = {}
        self._stats: ServiceStats | None = None

    async def run(self) -> None:
        import psutil

        process = _watch(self.edge.service_pid)
        broker = _watch(self.edge.broker_pid)
        workers = [w for w in map(_watch, self.worker_pids) if w is not None]
        stats_topic = service_topic(self.edge.instance, ServiceTopic.STATS)
        async with MqttSession(
            self.edge.address, client_id=f"sciot-swarm-sampler-{os.getpid()}"
        ) as mqtt:
            await mqtt.subscribe("$SYS/broker/messages/received", "$SYS/broker/messages/sent")
            await mqtt.subscribe(stats_topic, qos=0)
            listener = asyncio.create_task(self._listen(mqtt, stats_topic), name="sampler-rx")
            try:
                previous: dict[str, tuple[float, float]] = {}
                while True:
                    await asyncio.sleep(1.0)  # the sampling period, not a synchronization
                    now = time.time()
                    sample: dict[str, Any] = {"t_s": round(now - self.t0, 3)}
                    if process is not None:
                        sample.update(_process_sample(process))
                    # Where the rest of the machine's CPU went: the broker and the devices.
                    with contextlib.suppress(psutil.Error):
                        if broker is not None:
                            sample["broker_cpu_percent"] = round(broker.cpu_percent(None), 1)
                        if workers:
                            sample["workers_cpu_percent"] = round(
                                sum(w.cpu_percent(None) for w in workers), 1
                            )
                        self._totals.service = {
                            "cpu_percent": sample.get("service_cpu_percent", 0),
                            "rss_mb": sample.get("service_rss_mb", 0),
                        }
                    for key, name in (("received", "broker_rx_per_s"), ("sent", "broker_tx_per_s")):
                        if key in self._sys:
                            value = self._sys[key]
                            if key in previous:
                                t, v = previous[key]
                                sample[name] = round((value - v) / max(now - t, 1e-3), 1)
                            previous[key] = (now, value)
                    if self._stats is not None:
                        sample["service_devices"] = self._stats.devices.model_dump()
                        sample["service_errors_total"] = self._stats.errors_total
                    self.samples.append(sample)
            finally:
                await finish(listener, timeout=1)

    async def _listen(self, mqtt: MqttSession, stats_topic: str) -> None:
        async for message in mqtt.messages():
            if message.topic.startswith("$SYS/"):
                with contextlib.suppress(ValueError):
                    self._sys[message.topic.rsplit("/", 1)[1]] = float(message.payload)
            elif message.topic == stats_topic:
                with contextlib.suppress(Exception):
                    self._stats = ServiceStats.decode(message.payload)


def _watch(pid: int | None) -> Any:
    """A psutil handle whose CPU counter has started, or None."""
    import psutil

    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        process.cpu_percent(None)
    except psutil.Error:
        return None
    return process


def _process_sample(process: Any) -> dict[str, float]:
    import psutil

    try:
        with process.oneshot():
            return {
                "service_cpu_percent": round(process.cpu_percent(None), 1),
                "service_rss_mb": round(process.memory_info().rss / 2**20, 1),
                "service_fds": process.num_fds(),
            }
    except psutil.Error:
        return {}
