"""What a model's output means: detections, top classes or raw statistics, from the
sidecar or inferred, for the shipped model and every test-zoo model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.models import ModelError, ModelPackage, SegmentRunner, SyntheticScenes
from sciot_mqtt.models.inputs import synthetic_inputs
from sciot_mqtt.models.tasks import Task, aggregate_summaries
from tests.zoo.builders import ZOO, ZooModels


def test_fomo96_is_read_as_a_detection_grid(zoo_package: ModelPackage) -> None:
    task = zoo_package.task
    assert task.task == Task.DETECTION and task.source.startswith("inferred")
    assert task.labels == ("background", "disc", "square")
    scene = SyntheticScenes(seed=4).scene(0)
    output = SegmentRunner(zoo_package).run_whole(zoo_package.quantize_input(scene.image))
    summary = zoo_package.summarize(output)
    assert [(d.class_id, d.x, d.y) for d, _ in summary.detections] == [
        (d.class_id, d.x, d.y) for d in zoo_package.decode(output)
    ]
    assert summary.detections, "a scene with objects"
    as_json = json.loads(json.dumps(summary.to_dict()))
    assert as_json["task"] == "detection"
    assert {d["label"] for d in as_json["detections"]} <= {"disc", "square"}
    assert summary.top == f"{len(summary.detections)} objects"


def test_every_zoo_model_has_its_task(zoo_models: ZooModels, zoo_name: str) -> None:
    package = zoo_models.package(zoo_name)
    entry = ZOO[zoo_name]
    task = package.task
    assert task.task.value == entry.task
    assert (task.source == "sidecar") == ("task" in entry.sidecar)
    runner = SegmentRunner(package)
    inputs = synthetic_inputs(package.input_format, seed=1)
    outputs = [runner.run_whole(package.quantize_input(next(inputs))) for _ in range(4)]
    summaries = [package.summarize(output) for output in outputs]
    for output, summary in zip(outputs, summaries, strict=True):
        data = json.loads(json.dumps(summary.to_dict()))
        assert data["task"] == entry.task
        values = package.output.dequantize(output).ravel()
        if task.task == Task.CLASSIFICATION:
            top = data["top"]
            assert len(top) == min(task.top_k, values.size)
            assert top[0]["class_id"] == int(values.argmax())
            assert top[0]["score"] == pytest.approx(float(values.max()), abs=1e-6)
            scores = [c["score"] for c in top]
            assert scores == sorted(scores, reverse=True)
            labels = entry.sidecar.get("labels")
            assert top[0]["label"] == (
                labels[top[0]["class_id"]] if labels else str(top[0]["class_id"])
            )
        else:
            assert data["shape"] == list(package.output.shape)
            assert data["dtype"] == package.output.dtype
            assert data["values"] == pytest.approx(values.tolist(), abs=1e-5)
            assert data["argmax"] == int(values.argmax())
    aggregate = aggregate_summaries(summaries)
    assert aggregate[entry.task]["count"] == 4
    if task.task == Task.CLASSIFICATION:
        assert sum(aggregate[entry.task]["top1"].values()) == 4


def test_classification_picks_the_best_classes(zoo_models: ZooModels) -> None:
    package = zoo_models.package("ds_cnn_kws")
    spec = package.output
    probabilities = np.zeros(12, dtype=np.float32)
    probabilities[[7, 2, 9]] = [0.6, 0.3, 0.1]
    summary = package.summarize(spec.quantize(probabilities).reshape(spec.shape))
    assert [(c.class_id, c.label) for c in summary.classes] == [
        (7, "right"),
        (2, "yes"),
        (9, "off"),
    ]
    assert summary.classes[0].score == pytest.approx(0.6, abs=spec.scale)
    assert summary.brief().startswith("right:0.60")


def _copy_model(zoo_models: ZooModels, name: str, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(zoo_models.tflite(name), where / "model.tflite"))


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ({"task": "segmentation"}, "unknown task 'segmentation'"),
        ({"task": "detection"}, r"task detection needs a \(1, H, W, C\) grid"),
        ({"labels": ["a", "b", "c"]}, "3 labels for 12 output classes"),
        ({"labels": "yes,no"}, "labels must be a list of strings"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"threshold": 2}, r"threshold must be within \[0, 1\]"),
        ({"input_range": [1, 0]}, r"input_range must be \[LO, HI\] with LO < HI"),
        ({"input_kind": "audio"}, "input_kind must be image or tensor"),
    ],
)
def test_a_sidecar_that_does_not_fit_is_refused_before_anything_is_cached(
    zoo_models: ZooModels, tmp_path: Path, sidecar: dict[str, object], message: str
) -> None:
    path = _copy_model(zoo_models, "ds_cnn_kws", tmp_path / "model")
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelError, match=message):
        ModelPackage.prepare(path, tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*/manifest.json"))


def test_an_edited_sidecar_wins_over_the_cached_one(zoo_models: ZooModels, tmp_path: Path) -> None:
    path = _copy_model(zoo_models, "mobilenet_v3_small", tmp_path / "model")
    first = ModelPackage.prepare(path, tmp_path / "cache")
    assert first.task.task == Task.CLASSIFICATION and first.task.labels == ()
    labels = ["cat", "dog", "bird", "fish", "other"]
    path.with_suffix(".json").write_text(json.dumps({"labels": labels, "top_k": 1}))
    second = ModelPackage.prepare(path, tmp_path / "cache")
    assert second.directory == first.directory  # not cut again
    assert second.task.labels == tuple(labels) and second.task.top_k == 1
    # Written into the package: a process that only loads it sees the labels too.
    assert ModelPackage.load(second.directory).task.labels == tuple(labels)
    assert json.loads(second.files.sidecar.read_text())["labels"] == labels


def test_a_sidecar_task_overrides_the_inferred_one(zoo_models: ZooModels, tmp_path: Path) -> None:
    """A classifier whose sidecar says raw is summarized as a tensor."""
    path = _copy_model(zoo_models, "mobilenet_v3_small", tmp_path / "model")
    path.with_suffix(".json").write_text(json.dumps({"task": "raw"}))
    package = ModelPackage.prepare(path, tmp_path / "cache")
    assert package.task.task == Task.RAW and package.task.source == "sidecar"
    output = np.zeros(package.output.shape, dtype=np.int8)
    assert package.summarize(output).to_dict()["shape"] == [1, 5]
