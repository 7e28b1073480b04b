"""One inference through the service: `infer` -> validated tensors -> tail -> `result`.

Every request ends in exactly one of: answered (a `result`), rejected (an `error`), a
duplicate (answered again from the device's recent requests, or dropped while its answer is
under way), or lost (the connection died before the result went out); `Counters` keeps the
tally that `stats` publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import structlog

from sciot_mqtt.errors import ConnectionLostError, ErrorCode, ProtocolError
from sciot_mqtt.protocol import DeviceTopic, InferRequest, InferResult, Message
from sciot_mqtt.protocol.tensors import decode_tensors, encode_tensor
from sciot_mqtt.service.planner import SplitPlanner
from sciot_mqtt.service.recent import Seen, digest
from sciot_mqtt.service.registry import DeviceRecord, Registry
from sciot_mqtt.service.stats import Counters

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage
    from sciot_mqtt.service.engine import InferenceEngine


class Outbox(Protocol):
    """How the pipeline answers devices (the service's connection)."""

    async def send(self, device_id: str, message: Message) -> int:
        """Publish `message` on the device's topic; the payload's size. Raises
        `ConnectionLostError` without a connection."""
        ...

    async def reject(
        self, device_id: str, topic: DeviceTopic, error: ProtocolError, seq: int | None
    ) -> None:
        """Answer on the device's `error` topic and count it."""
        ...


@dataclass(slots=True)
class _Job:
    record: DeviceRecord
    package: ModelPackage
    request: InferRequest
    tensors: Mapping[str, np.ndarray]
    received: float  # perf_counter() when the message arrived
    settled: bool = False  # no longer `running`: counted as answered, rejected or lost


class InferencePipeline:
    """Admits `infer` requests, runs their tails in owned tasks and publishes the results."""

    def __init__(
        self,
        *,
        registry: Registry,
        packages: Mapping[str, ModelPackage],
        engine: InferenceEngine | None,
        planner: SplitPlanner,
        outbox: Outbox,
        counters: Counters,
        max_payload: int,
        answered: Callable[[DeviceRecord], Awaitable[None]],
        changed: Callable[[], Awaitable[None]],
        internal_errors: list[str],
    ) -> None:
        """`answered(record)` runs after each result (the service decides again there);
        `changed()` after each inference ends (waiters on the counters wake up)."""
        self.registry = registry
        self.packages = packages
        self.engine = engine
        self.planner = planner
        self.outbox = outbox
        self.counters = counters
        self.max_payload = max_payload
        self._answered = answered
        self._changed = changed
        self._internal_errors = internal_errors
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger("sciot.service.infer")

    # --- admission ------------------------------------------------------------------------

    async def on_infer(self, device_id: str, payload: bytes, received: float) -> None:
        """An `infer` payload from a device with a valid id; a payload that does not decode
        raises `ProtocolError` (answered by the caller, without a `seq`)."""
        self.counters.infer += 1
        request = InferRequest.decode(payload, max_bytes=self.max_payload)
        try:
            await self._admit(device_id, request, payload, received)
        except ProtocolError as error:
            await self.outbox.reject(device_id, DeviceTopic.INFER, error, request.seq)

    async def _admit(
        self, device_id: str, request: InferRequest, payload: bytes, received: float
    ) -> None:
        """Validate now (errors answer at once), run the tail in an owned task."""
        record = self._registered(device_id, request.session, request.model)
        payload_digest = digest(payload)
        seen = record.recent.check(request.session, request.seq, payload_digest)
        if seen is Seen.CONFLICT:
            raise ProtocolError(
                ErrorCode.INVALID,
                f"seq {request.seq} of session {request.session} was used by another request",
            )
        if seen is not Seen.NEW:
            await self._on_duplicate(record, request, record.recent.answer_of(request.seq))
            return
        package = self.packages.get(request.model)
        if package is None or self.engine is None:
            raise ProtocolError(ErrorCode.NO_MODEL, f"{request.model!r} is not loaded here")
        if not 0 <= request.split < package.num_ops:
            raise ProtocolError(
                ErrorCode.BAD_SPLIT,
                f"split {request.split} outside 0..{package.num_ops - 1} "
                f"for offloading {package.model_id}",
            )
        tensors = decode_tensors(package.boundaries[request.split].tensors, request.tensors)
        if len(request.device_ms) != request.split:
            raise ProtocolError(
                ErrorCode.INVALID,
                f"device_ms has {len(request.device_ms)} times for split {request.split}",
            )
        cost = self.planner.cost_model(record)
        if cost is not None:
            cost.on_request(request.seq, request.split, request.device_ms, len(payload))
            if request.rtt_ms is not None and request.rtt_seq is not None:
                cost.on_round_trip(request.rtt_seq, request.rtt_ms)
        record.recent.start(request.session, request.seq, payload_digest)
        self.counters.running += 1
        task = asyncio.create_task(
            self._infer(_Job(record, package, request, tensors, received)),
            name=f"infer-{device_id}-{request.seq}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _registered(self, device_id: str, session: int, model: str) -> DeviceRecord:
        record = self.registry.get(device_id)
        if record is None or not record.registered or record.session != session:
            raise ProtocolError(
                ErrorCode.NOT_REGISTERED, "no current birth for this session; send birth first"
            )
        if record.model != model:
            raise ProtocolError(
                ErrorCode.WRONG_MODEL, f"assigned model is {record.model!r}, not {model!r}"
            )
        return record

    async def _on_duplicate(
        self, record: DeviceRecord, request: InferRequest, answer: InferResult | None
    ) -> None:
        """A QoS 1 redelivery: never run twice; answer again with the very same result."""
        self.counters.duplicates += 1
        self._log.info(
            "duplicate infer",
            device_id=record.device_id,
            seq=request.seq,
            session=request.session,
            action="dropped, answer under way" if answer is None else "answered again",
        )
        if answer is not None:
            await self.outbox.send(record.device_id, answer)

    # --- running --------------------------------------------------------------------------

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("inference task failed", task=task.get_name(), error=repr(exc))
            self._internal_errors.append(repr(exc))

    def _settle(self, job: _Job) -> None:
        """Leave `running`, right before (no await between) the outcome's counter goes up,
        so that `stats` never counts a request twice."""
        assert not job.settled
        job.settled = True
        self.counters.running -= 1

    async def _infer(self, job: _Job) -> None:
        try:
            await self._run(job)
        except asyncio.CancelledError:
            if not job.settled:  # stopped before the answer went out
                self._settle(job)
                self.counters.lost += 1
            raise
        await self._changed()

    async def _run(self, job: _Job) -> None:
        assert self.engine is not None
        record, request = job.record, job.request
        try:
            outcome = await self.engine.run_tail(request.model, request.split, job.tensors)
        except ProtocolError as error:
            # Overloaded: a redelivery may find room, so forget it.
            record.recent.finish(request.session, request.seq, None)
            self._settle(job)
            await self.outbox.reject(record.device_id, DeviceTopic.INFER, error, request.seq)
            return
        except Exception:
            record.recent.finish(request.session, request.seq, None)
            self._log.exception("tail failed", device_id=record.device_id, seq=request.seq)
            self._internal_errors.append(traceback.format_exc())
            failure = ProtocolError(ErrorCode.INTERNAL, "the service failed on this inference")
            self._settle(job)
            await self.outbox.reject(record.device_id, DeviceTopic.INFER, failure, request.seq)
            return
        result = InferResult(
            seq=request.seq,
            model=request.model,
            split=request.split,
            output=encode_tensor(job.package.output, outcome.output),
            edge_ms=outcome.edge_op_ms,
            queue_ms=outcome.queue_s * 1000,
            service_ms=(time.perf_counter() - job.received) * 1000,
        )
        # Kept before publishing, so a redelivery after a lost connection gets this answer.
        record.recent.finish(request.session, request.seq, result)
        try:
            sent = await self.outbox.send(record.device_id, result)
        except ConnectionLostError:
            self._settle(job)
            self.counters.lost += 1
            self._log.warning(
                "result lost with the connection", device_id=record.device_id, seq=request.seq
            )
            return
        self._settle(job)
        self.counters.answered += 1
        if record.cost is not None:
            record.cost.on_result(request.seq, sent, result.service_ms)
        # The receive loop notices a lost connection and reconnects; nothing to do here.
        with contextlib.suppress(ConnectionLostError):
            await self._answered(record)

    # --- stopping -------------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Let inferences under way publish their results (before going offline)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def cancel(self) -> None:
        """End every inference task; those not answered yet count as lost."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
