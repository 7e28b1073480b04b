"""What the dashboard knows of the fleet, built from the messages its account may read:
every instance's `state` and `stats`, every device's `explain`. Pure logic, no I/O: the feed
hands it messages, the web server asks it for a JSON-ready snapshot.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sciot_mqtt.errors import ProtocolError
from sciot_mqtt.protocol import (
    DeviceAddress,
    DeviceTopic,
    ServiceAddress,
    ServiceState,
    ServiceStats,
    ServiceTopic,
    SplitExplanation,
    parse_topic,
)

HISTORY_S = 600.0  # the fleet charts show the last ten minutes


@dataclass
class _Instance:
    state: ServiceState | None = None
    stats: ServiceStats | None = None
    # (unix time, inferences/s, p50 ms, p99 ms, offloaded share) per stats message
    points: deque[tuple[float, float, float | None, float | None, float | None]] = field(
        default_factory=deque
    )


class FleetState:
    """The latest of every instance and device, and the fleet's recent history."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._instances: dict[str, _Instance] = {}
        self._devices: dict[str, SplitExplanation] = {}
        self.version = 0  # bumped on every change: the web server pushes when it moved

    def apply(self, topic: str, payload: bytes) -> bool:
        """Take one message in; False if it is none of the dashboard's (or undecodable)."""
        address = parse_topic(topic)
        try:
            if isinstance(address, DeviceAddress) and address.kind is DeviceTopic.EXPLAIN:
                if payload:
                    self._devices[address.device_id] = SplitExplanation.decode(payload)
                else:  # a cleared retained message: the device is gone
                    self._devices.pop(address.device_id, None)
            elif isinstance(address, ServiceAddress) and address.kind is ServiceTopic.STATE:
                self._instance(address.instance).state = ServiceState.decode(payload)
            elif isinstance(address, ServiceAddress) and address.kind is ServiceTopic.STATS:
                self._add_stats(address.instance, ServiceStats.decode(payload))
            else:
                return False
        except ProtocolError:
            return False
        self.version += 1
        return True

    def _instance(self, name: str) -> _Instance:
        return self._instances.setdefault(name, _Instance())

    def _add_stats(self, name: str, stats: ServiceStats) -> None:
        instance = self._instance(name)
        now = self._wall()
        instance.stats = stats
        window = stats.window
        if window is not None:
            done = window.offloaded + window.local
            share = window.offloaded / done if done else None
            rate = done / window.interval_s
            instance.points.append((now, rate, window.latency_p50_ms, window.latency_p99_ms, share))
        while instance.points and instance.points[0][0] < now - HISTORY_S:
            instance.points.popleft()

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, JSON-ready."""
        instances = []
        for name, instance in sorted(self._instances.items()):
            stats = instance.stats
            instances.append(
                {
                    "name": name,
                    "online": instance.state.online if instance.state is not None else None,
                    "version": instance.state.version if instance.state is not None else None,
                    "stats": stats.model_dump(mode="json") if stats is not None else None,
                    "points": [list(p) for p in instance.points],
                }
            )
        devices = {
            device_id: explanation.model_dump(mode="json")
            for device_id, explanation in sorted(self._devices.items())
        }
        return {"at": self._wall(), "instances": instances, "devices": devices}
