"""Batched tails on real LiteRT: where the check at model preparation lets a split point
batch, every item of a batch is bit-for-bit its lone run; where it does not (a tail that
cannot take a batch, or whose kernels round differently in one), the engine runs each
request alone. Over every split point of fomo96, the branchy model and the test zoo."""

from __future__ import annotations

import asyncio

import numpy as np

from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models import ModelPackage, SegmentRunner
from sciot_mqtt.models.batching import batchable_splits, random_inputs
from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.service.engine import InferenceEngine

MAX_BATCH = 16


def _lives(package: ModelPackage, count: int, seed: int) -> list[list[dict[str, np.ndarray]]]:
    """For `count` inputs, the tensors live at every split point: `[split][item]`."""
    runner = SegmentRunner(package)
    if package.model_id == "fomo96":  # real images for the shipped model
        images = synthetic_images(seed=seed)
        first = [{package.input.name: package.quantize_input(next(images))} for _ in range(count)]
    else:
        rng = np.random.default_rng(seed)
        first = [
            {t.name: a for t, a in zip(package.inputs, random_inputs(package, rng), strict=True)}
            for _ in range(count)
        ]
    lives = [first]
    for s in range(package.num_ops - 1):
        lives.append([runner.run_op(s, live)[0] for live in lives[-1]])
    return lives


def test_each_item_of_a_batch_is_its_lone_run(package: ModelPackage) -> None:
    allowed = batchable_splits(package, MAX_BATCH)
    if package.model_id == "fomo96":
        assert allowed == set(range(package.num_ops))  # no op of fomo96 fixes the batch
    runner = SegmentRunner(package)
    # Other inputs than the check's own.
    for s, live in enumerate(_lives(package, MAX_BATCH, seed=7)):
        lone = [runner.run_tail(s, tensors) for tensors in live]
        if s in allowed:
            for size in (2, MAX_BATCH, 5):
                batched = runner.run_tail_batch(s, live[:size])
                for k, (got, want) in enumerate(zip(batched, lone, strict=False)):
                    assert got.dtype == want.dtype and got.shape == want.shape
                    assert np.array_equal(got, want), f"split {s}, batch {size}, item {k}"
        else:
            # Refused for a reason: LiteRT refuses the batch, or some size changes a result.
            refused = False
            for size in range(2, MAX_BATCH + 1):
                try:
                    batched = runner.run_tail_batch(s, live[:size])
                except ModelError:
                    refused = True
                    break
                if not all(map(np.array_equal, batched, lone)):
                    refused = True
                    break
            assert refused, f"split {s} was refused but batches like lone runs here"


def test_zoo_models_with_a_fixed_batch_fall_back_at_the_splits_that_need_it(
    zoo_models: object,
) -> None:
    from tests.zoo.builders import ZooModels

    assert isinstance(zoo_models, ZooModels)
    # Built with the batch fixed at 1: every tail through a RESHAPE to a fixed shape fails
    # to allocate at a larger batch; the float model's DEQUANTIZE rounds one ulp apart.
    person = zoo_models.package("mobilenet_v1_person")
    assert batchable_splits(person, 8) == {person.num_ops - 1}  # the SOFTMAX after it
    assert batchable_splits(zoo_models.package("two_branch_float"), 8) == set()
    kws = zoo_models.package("ds_cnn_kws")  # no RESHAPE: every split batches
    assert batchable_splits(kws, 8) == set(range(kws.num_ops))


async def test_the_engine_batches_where_allowed_and_runs_alone_elsewhere(
    package: ModelPackage,
) -> None:
    """MAX_BATCH requests per split point, waiting together: one invoke where the split
    may batch, each alone elsewhere; every result its lone run's either way."""
    runner = SegmentRunner(package)
    lives = _lives(package, MAX_BATCH, seed=3)
    async with InferenceEngine(
        {package.model_id: package}, workers=1, max_batch=MAX_BATCH
    ) as engine:
        allowed = engine.batchable[package.model_id]
        refused = set(range(package.num_ops)) - allowed
        # Every split of the small models; the first and last of each kind for the others.
        splits = sorted(
            set(range(package.num_ops))
            if package.num_ops <= 32
            else {min(allowed, default=0), max(allowed, default=0)}
            | {min(refused, default=0), max(refused, default=0)}
        )
        for s in splits:
            outcomes = await asyncio.gather(
                *(engine.run_tail(package.model_id, s, tensors) for tensors in lives[s])
            )
            want_batch = MAX_BATCH if s in allowed else 1
            for k, (outcome, tensors) in enumerate(zip(outcomes, lives[s], strict=True)):
                assert np.array_equal(outcome.output, runner.run_tail(s, tensors)), (s, k)
                assert outcome.batch == want_batch, f"split {s}"
                assert outcome.compute_s > 0
            if s in allowed:  # each item is charged its share of the one invoke
                assert len({o.compute_s for o in outcomes}) == 1
        assert engine.pending == 0
