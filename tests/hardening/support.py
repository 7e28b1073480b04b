"""Shared pieces of the hardening tests: devices that keep inferring, and wire accounting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from sciot_mqtt.device import Device
from sciot_mqtt.device.inference import InferenceRecord
from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.errors import ProtocolError
from sciot_mqtt.protocol import (
    DeviceTopic,
    ErrorReport,
    InferRequest,
    InferResult,
    parse_topic,
)
from sciot_mqtt.protocol.tensors import encode_tensor
from sciot_mqtt.settings import DeviceSettings, ServiceSettings
from sciot_mqtt.transport import Inbound

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

# Why an offloaded inference may end on the device when the service or broker goes away.
OUTAGE_REASONS = {"disconnected", "service unavailable"}


def service_settings(**changes: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "instance": "edge",
        "heartbeat_interval": 0.5,
        "stats_interval": 0.5,
        "offline_grace": 1.0,
        "keepalive": 5,
    }
    return ServiceSettings(_env_file=None, **(values | changes))  # type: ignore[call-arg]


def device_settings(device_id: str, **changes: Any) -> DeviceSettings:
    values: dict[str, Any] = {"heartbeat_interval": 0.5, "keepalive": 5, "split": 3}
    return DeviceSettings(_env_file=None, id=device_id, **(values | changes))  # type: ignore[call-arg]


class InferenceLoop:
    """A device inferring back to back, each result checked against the whole model."""

    def __init__(self, device: Device, seed: int = 0) -> None:
        self.device = device
        self.records: list[InferenceRecord] = []
        self._images = synthetic_images(seed=seed)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._added = asyncio.Condition()

    async def _run(self) -> None:
        try:
            while not self._stop.is_set():
                record = await self.device.infer(next(self._images), verify=True)
                async with self._added:
                    self.records.append(record)
                    self._added.notify_all()
        finally:
            async with self._added:
                self._added.notify_all()  # waiters see the loop ended

    def count(self, where: Callable[[InferenceRecord], bool]) -> int:
        return sum(1 for r in self.records if where(r))

    async def wait_for(
        self, where: Callable[[InferenceRecord], bool], n: int, *, after: int = 0, timeout: float
    ) -> None:
        """Until `n` records after index `after` satisfy `where` (polls the loop's own list)."""

        def enough() -> bool:
            return sum(1 for r in self.records[after:] if where(r)) >= n

        def ended() -> bool:
            return self._task is not None and self._task.done()

        async with asyncio.timeout(timeout), self._added:
            await self._added.wait_for(lambda: enough() or ended())
        if not enough():
            assert self._task is not None
            self._task.result()  # surfaces the loop's exception
            raise AssertionError("inference loop ended")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[InferenceLoop]:
        self._task = asyncio.create_task(self._run(), name=f"loop-{self.device.device_id}")
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.wait_for(self._task, 30)


def infer_seqs_on_wire(messages: Iterable[Inbound], device_id: str) -> set[int]:
    """Sequence numbers of every `infer` of `device_id` a probe saw reach the broker."""
    seqs = set()
    for message in messages:
        address = parse_topic(message.topic)
        if getattr(address, "device_id", None) == device_id and (
            getattr(address, "kind", None) is DeviceTopic.INFER
        ):
            with contextlib.suppress(ProtocolError):
                seqs.add(InferRequest.decode(message.payload).seq)
    return seqs


def answered_seqs_on_wire(messages: Iterable[Inbound], device_id: str) -> set[int]:
    """Sequence numbers the service answered for `device_id`, with a result or an error."""
    seqs = set()
    for message in messages:
        address = parse_topic(message.topic)
        if getattr(address, "device_id", None) != device_id:
            continue
        kind = getattr(address, "kind", None)
        with contextlib.suppress(ProtocolError):
            if kind is DeviceTopic.RESULT:
                seqs.add(InferResult.decode(message.payload).seq)
            elif kind is DeviceTopic.ERROR:
                error = ErrorReport.decode(message.payload)
                if error.seq is not None and error.topic == DeviceTopic.INFER.value:
                    seqs.add(error.seq)
    return seqs


def assert_accounted(
    loop: InferenceLoop, wire_seqs: set[int], reasons: set[str] = OUTAGE_REASONS
) -> None:
    """Every inference ends answered, planned local, or finished locally with a reason; and
    every `infer` that reached the broker is one of them (none vanished)."""
    records = {r.seq: r for r in loop.records}
    assert len(records) == len(loop.records), "a sequence number was used twice"
    assert all(r.matches_local for r in loop.records), "a result differs from the whole model"
    for record in loop.records:
        if record.path == "fallback":
            assert record.reason in reasons, (record.seq, record.reason)
        elif record.path == "offload":
            assert record.reason == "answered" and record.service_ms is not None
    missing = wire_seqs - records.keys()
    assert not missing, f"infer on the wire with no outcome on the device: {sorted(missing)}"
    for seq in wire_seqs:
        assert records[seq].path in ("offload", "fallback"), records[seq]
    summary = loop.device.summary()
    assert summary.inferences == len(loop.records)
    assert summary.offloaded == loop.count(lambda r: r.path == "offload")
    assert summary.fallbacks_local == sum(summary.fallback_reasons.values())


def packages_of(models: dict[str, ModelPackage]) -> dict[str, ModelPackage]:
    return {"fomo96": models["fomo96"]}


def request(package: ModelPackage, seq: int, session: int, fill: int = 0) -> InferRequest:
    split = 3
    return InferRequest(
        seq=seq,
        session=session,
        model=package.model_id,
        split=split,
        tensors=[
            encode_tensor(
                spec,
                np.frombuffer(bytes([fill % 256]) * spec.nbytes, spec.dtype).reshape(spec.shape),
            )
            for spec in package.boundaries[split].tensors
        ],
        device_ms=[1.0] * split,
    )
