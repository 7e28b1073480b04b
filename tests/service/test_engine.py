"""The inference engine on the real model: tails that wait together go to a worker in one
hand-off, and each result is exactly what a lone run of that tail gives."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.models import ModelPackage, SegmentRunner
from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.service.engine import HANDOFF_MAX, InferenceEngine


def _requests(
    package: ModelPackage, splits: list[int], count: int
) -> list[tuple[int, dict[str, np.ndarray], np.ndarray]]:
    """(split, live tensors, the lone run's output) for `count` images over `splits`."""
    runner = SegmentRunner(package)
    images = synthetic_images(seed=11)
    out = []
    for split in itertools.islice(itertools.cycle(splits), count):
        x = package.quantize_input(next(images))
        live, _ = runner.run_head(split, x)
        out.append((split, live, runner.run_whole(x)))
    return out


async def test_tails_waiting_together_each_get_a_lone_runs_result(
    sciot_models: dict[str, ModelPackage],
) -> None:
    package = sciot_models["fomo96"]
    # More requests than one hand-off takes, over several split points at once.
    requests = _requests(package, [0, 6, 12, 20, package.num_ops - 1], 3 * HANDOFF_MAX)
    async with InferenceEngine({package.model_id: package}, workers=2) as engine:
        outcomes = await asyncio.gather(
            *(engine.run_tail(package.model_id, s, live) for s, live, _ in requests)
        )
        assert engine.pending == 0
    for (split, _, expected), outcome in zip(requests, outcomes, strict=True):
        assert np.array_equal(outcome.output, expected), f"split {split}"
        assert len(outcome.edge_op_ms) == package.num_ops - split
        assert outcome.compute_s > 0 and outcome.queue_s >= 0


async def test_a_full_queue_answers_overloaded(sciot_models: dict[str, ModelPackage]) -> None:
    package = sciot_models["fomo96"]
    (split, live, expected), *_ = _requests(package, [12], 1)
    async with InferenceEngine({package.model_id: package}, workers=1, max_pending=4) as engine:
        results = await asyncio.gather(
            *(engine.run_tail(package.model_id, split, live) for _ in range(6)),
            return_exceptions=True,
        )
    for result in results[:4]:
        assert not isinstance(result, BaseException)
        assert np.array_equal(result.output, expected)
    for result in results[4:]:
        assert isinstance(result, ProtocolError) and result.code is ErrorCode.OVERLOADED


async def test_a_failing_tail_fails_alone(sciot_models: dict[str, ModelPackage]) -> None:
    package = sciot_models["fomo96"]
    (split, live, expected), *_ = _requests(package, [12], 1)
    wrong = {name: np.zeros(1, dtype=a.dtype) for name, a in live.items()}  # bad shape
    async with InferenceEngine({package.model_id: package}, workers=1) as engine:
        results = await asyncio.gather(
            engine.run_tail(package.model_id, split, live),
            engine.run_tail(package.model_id, split, wrong),
            engine.run_tail(package.model_id, split, live),
            return_exceptions=True,
        )
    assert isinstance(results[1], ModelError)
    for result in (results[0], results[2]):
        assert not isinstance(result, BaseException)
        assert np.array_equal(result.output, expected)


async def test_leaving_cancels_what_still_waits(sciot_models: dict[str, ModelPackage]) -> None:
    package = sciot_models["fomo96"]
    (split, live, _), *_ = _requests(package, [0], 1)
    engine = InferenceEngine({package.model_id: package}, workers=1)
    await engine.__aenter__()
    waiting = [
        asyncio.ensure_future(engine.run_tail(package.model_id, split, live)) for _ in range(40)
    ]
    await asyncio.sleep(0)  # one turn of the loop: each task ran up to its wait (FIFO)
    assert engine.pending == len(waiting)
    await engine.__aexit__(None, None, None)
    done, pending = await asyncio.wait(waiting, timeout=10)
    assert not pending  # none is left hanging
    assert all(t.cancelled() or t.exception() is None for t in done)
    with pytest.raises(RuntimeError, match="not started"):
        await engine.run_tail(package.model_id, split, live)


@pytest.mark.parametrize("max_batch", [1, 4])
async def test_batches_hold_one_split_and_at_most_max_batch(
    sciot_models: dict[str, ModelPackage], max_batch: int
) -> None:
    """Tails of several split points waiting together: a batch never mixes split points nor
    exceeds `max_batch` (1: every tail its own invoke, as before batching); each result is
    its lone run's."""
    package = sciot_models["fomo96"]
    requests = _requests(package, [6, 12, 20], 3 * 5)  # five per split, interleaved
    async with InferenceEngine(
        {package.model_id: package}, workers=1, max_batch=max_batch
    ) as engine:
        outcomes = await asyncio.gather(
            *(engine.run_tail(package.model_id, s, live) for s, live, _ in requests)
        )
    for (split, _, expected), outcome in zip(requests, outcomes, strict=True):
        assert np.array_equal(outcome.output, expected), f"split {split}"
        assert 1 <= outcome.batch <= max_batch
    if max_batch > 1:  # one hand-off took them all: five per split, a batch of 4 and one
        assert sorted(o.batch for o in outcomes) == [1] * 3 + [4] * 12
