"""Runs model tails for the service in worker threads, never on the event loop.

LiteRT interpreters are not thread-safe, so each worker thread keeps its own runner per
model; interpreters are created once per (thread, model, split) and reused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import numpy as np

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.models.pool import ComputePool


@dataclass(frozen=True, slots=True)
class TailOutcome:
    output: np.ndarray
    compute_s: float  # fused tail invoke, wall time in the worker
    queue_s: float  # waiting for a worker
    edge_op_ms: list[float]  # per operator [split, N), see EdgeProfile


class EdgeProfile:
    """Per-operator edge times of one model: calibrated once, then tracked by EMA.

    The edge runs a fused tail per split (one invoke), so per-operator times cannot be read
    off a request. At start every operator is timed alone (its own segment, several runs);
    each measured tail then rescales the calibrated shares of its operators, smoothed.
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


class InferenceEngine:
    """A bounded pool of worker threads running tails; an async context manager."""

    def __init__(
        self, packages: Mapping[str, ModelPackage], *, workers: int = 2, max_pending: int = 256
    ) -> None:
        self.packages = dict(packages)
        self.workers = workers
        self.max_pending = max_pending
        self.profiles: dict[str, EdgeProfile] = {}
        self.queue_ms = 0.0  # EMA of the wait for a worker: the load of every device counts
        self._pending = 0
        self._pool: ComputePool | None = None

    @property
    def pending(self) -> int:
        return self._pending

    async def __aenter__(self) -> Self:
        # Every worker builds all its interpreters when it starts, so no request pays for
        # creating the tail of a split point nobody used before.
        pool = self._pool = ComputePool(
            self.workers, name="sciot-tail", warm=self.packages.values()
        )
        for model_id, package in self.packages.items():
            calibrated = await pool.run(self._calibrate, pool, package)
            self.profiles[model_id] = EdgeProfile(calibrated)
        await pool.start_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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

    @staticmethod
    def _run(
        pool: ComputePool,
        package: ModelPackage,
        split: int,
        tensors: Mapping[str, np.ndarray],
        queued_at: float,
    ) -> tuple[np.ndarray, float, float]:
        started = time.perf_counter()
        output = pool.runner(package).run_tail(split, tensors)
        return output, time.perf_counter() - started, started - queued_at

    async def run_tail(
        self, model_id: str, split: int, tensors: Mapping[str, np.ndarray]
    ) -> TailOutcome:
        if self._pool is None:
            raise RuntimeError("inference engine not started")
        if self._pending >= self.max_pending:
            raise ProtocolError(
                ErrorCode.OVERLOADED, f"{self._pending} inferences waiting; run this one locally"
            )
        package = self.packages[model_id]
        self._pending += 1
        try:
            output, compute_s, queue_s = await self._pool.run(
                self._run, self._pool, package, split, tensors, time.perf_counter()
            )
        finally:
            self._pending -= 1
        edge_op_ms = self.profiles[model_id].observe(split, compute_s * 1000)
        self.queue_ms += 0.2 * (queue_s * 1000 - self.queue_ms)
        return TailOutcome(output, compute_s, queue_s, edge_op_ms)
