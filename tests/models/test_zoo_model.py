"""The shipped fomo96 model: its metadata holds, and it detects on held-out scenes."""

from __future__ import annotations

import json

import pytest

from sciot_mqtt.models import (
    CLASS_NAMES,
    EVAL_SEED,
    ModelPackage,
    SegmentRunner,
    SyntheticScenes,
    evaluate_package,
    file_sha256,
    zoo_metadata,
    zoo_model_ids,
    zoo_model_path,
)

# Measured when the model was built: int8 F1 0.985 (P 0.982, R 0.988) on 500 held-out
# scenes. Floors leave room for kernels that round differently on other CPUs.
F1_FLOOR = 0.93
PRECISION_FLOOR = 0.90
RECALL_FLOOR = 0.90


def test_metadata_describes_the_file() -> None:
    assert "fomo96" in zoo_model_ids()
    path = zoo_model_path("fomo96")
    meta = zoo_metadata("fomo96")
    assert meta["model_id"] == "fomo96"
    assert meta["sha256"] == file_sha256(path)
    assert meta["bytes"] == path.stat().st_size < 300_000
    assert meta["classes"] == list(CLASS_NAMES)
    assert meta["labels"] == ["background", *CLASS_NAMES]
    assert meta["input"]["dtype"] == "int8" and meta["input"]["shape"] == [1, 96, 96, 3]
    assert meta["training"]["epochs"] >= 1 and "seed" in meta["training"]
    json.dumps(meta)


def test_int8_model_scores_on_held_out_scenes(zoo_package: ModelPackage) -> None:
    score = evaluate_package(zoo_package, scenes=500, seed=EVAL_SEED)
    assert score.scenes == 500
    assert score.f1 >= F1_FLOOR, score
    assert score.precision >= PRECISION_FLOOR and score.recall >= RECALL_FLOOR, score
    recorded = zoo_metadata("fomo96")["score"]["int8"]
    assert score.f1 == pytest.approx(recorded["f1"], abs=0.02)


def test_detections_on_a_scene(zoo_package: ModelPackage) -> None:
    runner = SegmentRunner(zoo_package)
    scene = SyntheticScenes(EVAL_SEED).scene(3)
    assert scene.objects
    out = runner.run_whole(zoo_package.quantize_input(scene.image))
    dets = zoo_package.decode(out, threshold=0.5)
    assert dets and all(d.class_id in (1, 2) and 0.5 <= d.score <= 1.0 for d in dets)
    found = {(d.class_id, d.x, d.y) for d in dets}
    for obj in scene.objects:
        gx, gy = obj.cell(8)
        near = {(obj.class_id, gx + dx, gy + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
        assert found & near, (obj, found)
