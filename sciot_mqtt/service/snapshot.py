"""What an instance learnt of a device, as the retained `snapshot` a successor starts from.

The serving instance publishes it when the device's birth is answered and then whenever its
cost model changed materially (at most once per interval); the instance taking the device
over (a handover, a failover) restores the operator times and the link fit from it instead
of probing from scratch. Pure logic, no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from sciot_mqtt.errors import ProtocolError
from sciot_mqtt.protocol import DeviceSnapshot
from sciot_mqtt.protocol.codec import TIMING_MAX_MS
from sciot_mqtt.service.decisions import DeviceCostModel
from sciot_mqtt.service.registry import DeviceRecord

OP_CHANGE = 0.2  # an operator's time moved by this fraction...
OP_CHANGE_MS = 0.05  # ...and this much: a material change
LINK_CHANGE = 0.2  # the link's latency or cost per byte moved by this fraction


def snapshot_of(record: DeviceRecord, instance: str) -> DeviceSnapshot | None:
    """The record's snapshot (None before a birth and a cost model)."""
    cost, birth = record.cost, record.birth
    if cost is None or birth is None or record.model is None:
        return None
    link = cost.link
    return DeviceSnapshot(
        instance=instance,
        session=record.session,
        kind=birth.kind,
        model=record.model,
        device_ms=[min(t, TIMING_MAX_MS) for t in cost.device.values()]
        if cost.device.complete
        else None,
        link_ms=min(link.latency_ms, TIMING_MAX_MS),
        link_ms_per_byte=min(link.ms_per_byte, 1e3),
        link_samples=link.observed,
    )


def restore(cost: DeviceCostModel, snapshot: DeviceSnapshot) -> bool:
    """Start `cost` from what `snapshot` says; False when it does not fit the model."""
    times = snapshot.device_ms
    if times is not None and len(times) != cost.n_ops:
        return False
    if times is not None:
        cost.device.ema = list(times)
    cost.link.latency_ms = snapshot.link_ms
    cost.link.ms_per_byte = snapshot.link_ms_per_byte
    cost.link.observed = snapshot.link_samples
    return True


def _moved(old: float, new: float, rel: float, floor: float) -> bool:
    return abs(new - old) > max(rel * abs(old), floor)


def _times_moved(old: Sequence[float] | None, new: Sequence[float] | None) -> bool:
    if (old is None) != (new is None):
        return True
    if old is None or new is None:
        return False
    if len(old) != len(new):
        return True
    return any(_moved(a, b, OP_CHANGE, OP_CHANGE_MS) for a, b in zip(old, new, strict=True))


def material_change(old: DeviceSnapshot, new: DeviceSnapshot) -> bool:
    """Whether `new` says something `old` did not: another session, kind or model, the
    operator times complete or moved, the link fit moved."""
    if (old.session, old.kind, old.model) != (new.session, new.kind, new.model):
        return True
    if _times_moved(old.device_ms, new.device_ms):
        return True
    return _moved(old.link_ms, new.link_ms, LINK_CHANGE, 1.0) or _moved(
        old.link_ms_per_byte, new.link_ms_per_byte, LINK_CHANGE, 0.0
    )


CHECKS = 8
"""Times per interval a device's snapshot is built to look for a material change."""


class SnapshotKeeper:
    """Decides when a device's snapshot is published: on a new session at once, then on a
    material change at most once per `interval` seconds."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, tuple[float, DeviceSnapshot]] = {}  # published: when, what
        self._checked: dict[str, float] = {}  # when a snapshot was last built to compare

    def due(
        self, record: DeviceRecord, instance: str, *, force: bool = False
    ) -> DeviceSnapshot | None:
        """The snapshot to publish now, if any (and it is then taken as published)."""
        now = self.clock()
        device_id = record.device_id
        last = self._last.get(device_id)
        if not force and last is not None and last[1].session == record.session:
            # The common case, per inference, must stay cheap: nothing while the last
            # snapshot is recent, and building one to compare at most `CHECKS` times an
            # interval after that.
            if now - last[0] < self.interval:
                return None
            if now - self._checked.get(device_id, -math.inf) < self.interval / CHECKS:
                return None
        self._checked[device_id] = now
        snapshot = snapshot_of(record, instance)
        if snapshot is None:
            return None
        if last is not None and not force and not material_change(last[1], snapshot):
            return None
        self._last[device_id] = (now, snapshot)
        return snapshot

    def forget(self, device_id: str) -> None:
        self._last.pop(device_id, None)
        self._checked.pop(device_id, None)


def decode_snapshot(payload: bytes | None) -> DeviceSnapshot | None:
    if not payload:
        return None
    try:
        snapshot = DeviceSnapshot.decode(payload)
    except ProtocolError:  # another instance's bad snapshot must not stop this one
        return None
    if snapshot.device_ms is not None and not all(math.isfinite(t) for t in snapshot.device_ms):
        return None
    return snapshot
