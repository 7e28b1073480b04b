"""Runs model tails for the service in worker threads, never on the event loop.

LiteRT interpreters are not thread-safe, so each worker thread keeps its own runner per
model; interpreters are created once per (thread, model, split) and reused. Tails that wait
at the same time go to a worker in one hand-off, and those of the same (model, split) run as
one batch where that split may batch (see `InferenceEngine`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import numpy as np
import structlog

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.models.batching import batchable_splits
from sciot_mqtt.models.pool import ComputePool
from sciot_mqtt.models.runtime import SegmentRunner


@dataclass(frozen=True, slots=True)
class TailOutcome:
    output: np.ndarray
    compute_s: float  # fused tail invoke, wall time in the worker (a batch's: its share)
    queue_s: float  # waiting for a worker
    edge_op_ms: list[float]  # per operator [split, N), see EdgeProfile
    batch: int = 1  # requests that shared its invoke


class EdgeProfile:
    """Per-operator edge times of one model: calibrated once, then tracked by EMA.

    The edge runs a fused tail per split (one invoke), so per-operator times cannot be read
    off a request. At start every operator is timed alone (its own segment, several runs);
    each measured tail then rescales the calibrated shares of its operators, smoothed. A
    tail run in a batch is observed at its share of the batch's time (the time divided by
    the items), so under load the profile learns the per-item cost batching gives.
    """

    def __init__(self, calibrated_ms: Sequence[float], alpha: float = 0.2) -> None:
        self.ms = list(calibrated_ms)
        self.alpha = alpha
        self._lock = threading.Lock()

    def observe(self, split: int, tail_ms: float) -> list[float]:
        with self._lock:
            share = self.ms[split:]
            total = sum(share) or 1.0
            estimate = [tail_ms * part / total for part in share]
            for offset, value in enumerate(estimate):
                i = split + offset
                self.ms[i] += self.alpha * (value - self.ms[i])
            return estimate


@dataclass(slots=True)
class _Waiting:
    """A tail waiting for a worker."""

    package: ModelPackage
    split: int
    tensors: Mapping[str, np.ndarray]
    queued_at: float  # perf_counter()
    answer: asyncio.Future[_Ran]


_Ran = tuple[np.ndarray, float, float, int]  # output, compute_s, queue_s, batch size

HANDOFF_MAX = 16
"""Most tails one worker hand-off takes (at least `max_batch`); the rest wait for the next
free worker."""


class InferenceEngine:
    """A bounded pool of worker threads running tails; an async context manager.

    Tails wait in one queue. Whenever a worker is free it takes every tail waiting (up to
    `HANDOFF_MAX`, at least `max_batch`) in one hand-off. Tails of the same (model, split)
    in it run as batches of up to `max_batch` in one invoke each, where the model's check at
    start (`batchable_splits`) proved that split's batches bit-identical to lone runs; every
    other tail runs alone. Under load that saves a thread hand-off, an event-loop wake-up and
    an invoke's overhead per inference; at light load each hand-off carries one tail, as
    before. Nothing ever waits for company. `max_batch` 1: every tail its own invoke."""

    def __init__(
        self,
        packages: Mapping[str, ModelPackage],
        *,
        workers: int = 2,
        max_pending: int = 256,
        max_batch: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.packages = dict(packages)
        self.workers = workers
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.batchable: dict[str, frozenset[int]] = {}  # model id -> splits that may batch
        self.profiles: dict[str, EdgeProfile] = {}
        self.queue_ms = 0.0  # EMA of the wait for a worker: the load of every device counts
        self._pending = 0
        self._pool: ComputePool | None = None
        self._waiting: deque[_Waiting] = deque()
        self._handoffs: set[asyncio.Task[None]] = set()  # at most `workers`

    @property
    def pending(self) -> int:
        return self._pending

    async def __aenter__(self) -> Self:
        # Every worker builds all its interpreters when it starts, so no request pays for
        # creating the tail of a split point nobody used before.
        pool = self._pool = ComputePool(
            self.workers, name="sciot-tail", warm=self.packages.values()
        )
        log = structlog.get_logger("sciot.service.engine")
        for model_id, package in self.packages.items():
            calibrated = await pool.run(self._calibrate, pool, package)
            self.profiles[model_id] = EdgeProfile(calibrated)
            try:
                splits = await pool.run(batchable_splits, package, self.max_batch)
            except Exception as exc:  # a model the check cannot run still serves, unbatched
                log.warning("batching check failed", model=model_id, error=repr(exc))
                splits = frozenset()
            self.batchable[model_id] = splits
            if self.max_batch > 1:
                alone = sorted(set(range(package.num_ops)) - splits)
                log.info("batching", model=model_id, max_batch=self.max_batch, alone=alone)
        await pool.start_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._handoffs):
            task.cancel()
        await asyncio.gather(*self._handoffs, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft().answer.cancel()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @staticmethod
    def _calibrate(pool: ComputePool, package: ModelPackage, repeats: int = 5) -> list[float]:
        """Each operator alone, best of `repeats`, on a zero input (times do not depend on data)."""
        runner = pool.runner(package)
        x = np.zeros(package.input.shape, dtype=package.input.np_dtype)
        best = [float("inf")] * package.num_ops
        for _ in range(repeats):
            _, seconds = runner.run_head(package.num_ops, x)
            best = [min(b, s * 1000) for b, s in zip(best, seconds, strict=True)]
        return best

    def _run(self, pool: ComputePool, handed: list[_Waiting]) -> list[_Ran | BaseException]:
        """On a worker: the hand-off's tails, grouped by (model, split) and run as batches
        where that split may batch; a failure is that tail's only."""
        outcomes: list[_Ran | BaseException | None] = [None] * len(handed)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, item in enumerate(handed):
            groups.setdefault((item.package.model_id, item.split), []).append(i)
        for (model_id, split), members in groups.items():
            runner = pool.runner(handed[members[0]].package)
            size = self.max_batch if split in self.batchable.get(model_id, ()) else 1
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                ran = self._run_batch(runner, split, [handed[i] for i in chunk])
                for i, outcome in zip(chunk, ran, strict=True):
                    outcomes[i] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    @staticmethod
    def _run_batch(
        runner: SegmentRunner, split: int, items: list[_Waiting]
    ) -> list[_Ran | BaseException]:
        """Several tails of one split in one invoke; alone if one, or if the batch fails (a
        malformed request among them): then each gets the outcome of its lone run."""
        if len(items) > 1:
            started = time.perf_counter()
            try:
                outputs = runner.run_tail_batch(split, [item.tensors for item in items])
            except Exception:  # each lone run below then reports its own failure
                pass
            else:
                share = (time.perf_counter() - started) / len(items)
                return [
                    (output, share, started - item.queued_at, len(items))
                    for output, item in zip(outputs, items, strict=True)
                ]
        outcomes: list[_Ran | BaseException] = []
        for item in items:
            started = time.perf_counter()
            try:
                output = runner.run_tail(split, item.tensors)
            except Exception as exc:
                outcomes.append(exc)
                continue
            outcomes.append((output, time.perf_counter() - started, started - item.queued_at, 1))
        return outcomes

    async def _hand_off(self, pool: ComputePool) -> None:
        """One worker's share: hand-offs while tails wait, then end (another starts on demand)."""
        try:
            while self._waiting:
                count = min(len(self._waiting), max(HANDOFF_MAX, self.max_batch))
                batch = [self._waiting.popleft() for _ in range(count)]
                try:
                    outcomes = await pool.run(self._run, pool, batch)
                except BaseException:
                    for item in batch:
                        item.answer.cancel()
                    raise
                for item, outcome in zip(batch, outcomes, strict=True):
                    if item.answer.done():  # its request was cancelled meanwhile
                        continue
                    if isinstance(outcome, BaseException):
                        item.answer.set_exception(outcome)
                    else:
                        item.answer.set_result(outcome)
        finally:
            self._handoffs.discard(asyncio.current_task())

    async def run_tail(
        self, model_id: str, split: int, tensors: Mapping[str, np.ndarray]
    ) -> TailOutcome:
        pool = self._pool
        if pool is None:
            raise RuntimeError("inference engine not started")
        if self._pending >= self.max_pending:
            raise ProtocolError(
                ErrorCode.OVERLOADED, f"{self._pending} inferences waiting; run this one locally"
            )
        package = self.packages[model_id]
        answer: asyncio.Future[_Ran] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(package, split, tensors, time.perf_counter(), answer))
        if len(self._handoffs) < self.workers:
            task = asyncio.create_task(self._hand_off(pool), name="sciot-tail-handoff")
            self._handoffs.add(task)
        self._pending += 1
        try:
            output, compute_s, queue_s, batch = await answer
        finally:
            self._pending -= 1
        edge_op_ms = self.profiles[model_id].observe(split, compute_s * 1000)
        self.queue_ms += 0.2 * (queue_s * 1000 - self.queue_ms)
        return TailOutcome(output, compute_s, queue_s, edge_op_ms, batch)
