"""Which split points' tails may run several requests in one interpreter invoke.

The edge batches requests for the same (model, split) that are already waiting: one invoke
with the batch dimension resized to their number (`SegmentRunner.run_tail_batch`). LiteRT's
builtin kernels compute each item of a batch on its own, so the items come out as lone runs
would give them -- when the tail can take a batch at all. A model converted with its batch
fixed at 1 may refuse it (a RESHAPE to a fixed shape fails to allocate) or, worse, accept it
and mix the items (a reshape that folds the batch into another dimension). So nothing is
assumed: at model preparation every split point's tail is run on distinct inputs as lone
runs and as batches, and only the split points where every item of every batch is
bit-identical to its lone run, at every batch size up to the largest allowed, may batch;
the others run each request on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.runtime import SegmentRunner

__all__ = ["batchable_splits", "probe_sizes", "random_inputs"]


def probe_sizes(max_batch: int) -> list[int]:
    """The batch sizes the check runs, in order: every one the engine may use, since a
    kernel may change its path with the size (two_branch_float in the test zoo: its float
    DEQUANTIZE is bit-identical at a batch of 2 and one ulp off from 3 on); the largest
    first, so the tail is also resized down, as under load."""
    return [max_batch, *range(2, max_batch)] if max_batch >= 2 else []


def batchable_splits(
    package: ModelPackage, max_batch: int, *, seed: int = 0, splits: Iterable[int] | None = None
) -> frozenset[int]:
    """The split points (of `splits`, default every offloading one) whose tail, at each of
    `probe_sizes(max_batch)`, gives every item bit-for-bit its lone run's output."""
    sizes = probe_sizes(max_batch)
    if not sizes:
        return frozenset()
    runner = SegmentRunner(package)
    rng = np.random.default_rng(seed)
    wanted = set(range(package.num_ops) if splits is None else splits)
    # The tensors live at each split point for `max_batch` distinct inputs, op by op.
    lives = [
        {t.name: a for t, a in zip(package.inputs, random_inputs(package, rng), strict=True)}
        for _ in range(max_batch)
    ]
    allowed = set()
    for s in range(package.num_ops):
        if s in wanted and _batches_match(runner, s, lives, sizes):
            allowed.add(s)
        lives = [runner.run_op(s, live)[0] for live in lives]
    return frozenset(allowed)


def _batches_match(
    runner: SegmentRunner, s: int, lives: list[dict[str, np.ndarray]], sizes: list[int]
) -> bool:
    lone = [runner.run_tail(s, live) for live in lives]
    for size in sizes:
        try:
            batched = runner.run_tail_batch(s, lives[:size])
        except ModelError:
            return False
        for got, want in zip(batched, lone[:size], strict=True):
            if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
                return False
    return True


def random_inputs(package: ModelPackage, rng: np.random.Generator) -> list[np.ndarray]:
    """One input per graph input, over its dtype's whole range (distinct per call, so a
    batch that mixed its items would show)."""
    out = []
    for spec in package.inputs:
        dtype = spec.np_dtype
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            array = rng.integers(info.min, int(info.max) + 1, spec.shape, dtype=dtype)
        else:
            array = rng.uniform(-1.0, 1.0, spec.shape).astype(dtype)
        out.append(array)
    return out
