"""`models build|split|list` handlers, through the parser they register."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.models import ModelPackage, zoo_model_path
from sciot_mqtt.models.cli import add_models_parser
from tests.zoo.builders import ZOO, ZooModels


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sciot-mqtt")
    add_models_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_split_zoo_model_then_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["models", "split", str(zoo_model_path()), "--model-cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model fomo96" in out and "25 ops, split points 0..25" in out
    assert "block_1_pad,block_1_depthwise" in out

    assert _run(["models", "list", "--model-cache", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["where"], r["model_id"]) for r in rows} >= {("zoo", "fomo96"), ("cache", "fomo96")}
    for r in rows:
        assert r["split_points"] == r["num_ops"] + 1 and r["bytes"] > 0

    assert _run(["models", "list", "--model-cache", str(tmp_path)]) == 0
    assert "fomo96" in capsys.readouterr().out


def test_split_json_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["models", "split", str(zoo_model_path()), "--model-cache", str(tmp_path), "--json"]
    assert _run(argv) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert len(manifest["boundaries"]) == manifest["num_ops"] + 1
    assert manifest["boundaries"][0]["tensors"][0]["dtype"] == "int8"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.tflite", None, "no such file"),
        ("weights.onnx", b"onnx", "unsupported model file"),
        ("broken.tflite", b"\x00" * 32, "not a TFLite flatbuffer"),
        ("broken.keras", b"nope", "cannot load Keras model"),
    ],
)
def test_split_bad_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    if name.endswith(".keras"):
        pytest.importorskip("tensorflow")
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert _run(["models", "split", str(path), "--model-cache", str(tmp_path / "c")]) == 1
    assert message in capsys.readouterr().err


def test_split_directory_and_misplaced_representative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["models", "split", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    rep = tmp_path / "rep.npy"
    np.save(rep, np.zeros((2, 96, 96, 3), np.float32))
    argv = ["models", "split", str(zoo_model_path()), "--representative", str(rep)]
    assert _run([*argv, "--cache-dir", str(tmp_path)]) == 1  # the deprecated flag still works
    assert "only applies to Keras" in capsys.readouterr().err


def test_split_keras_model_converts_and_caches(
    branchy_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep = tmp_path / "rep.npz"
    np.savez(rep, x=np.random.default_rng(0).uniform(0, 1, (16, 24, 24, 3)).astype(np.float32))
    cache = tmp_path / "cache"
    argv = ["models", "split", str(branchy_files["keras"]), "--model-cache", str(cache)]
    assert _run([*argv, "--representative", str(rep), "--num-samples", "16"]) == 0
    captured = capsys.readouterr()
    assert "model branchy" in captured.out and "converted" in captured.err
    (pkg,) = ModelPackage.list_cached(cache)
    assert pkg.model_id == "branchy" and pkg.input.dtype == "int8"
    assert max(len(b.tensors) for b in pkg.boundaries) >= 2


def test_build_rejects_zero_epochs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _run(["models", "build", "--epochs", "0", "--out", str(tmp_path)]) == 1
    assert "--epochs" in capsys.readouterr().err


def test_split_keras_classifier_takes_its_sidecar_and_fixes_the_batch(
    zoo_models: ZooModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Keras keyword spotter with a sidecar next to it: converted at batch 1 (its Flatten
    is a plain RESHAPE, no SHAPE/STRIDED_SLICE/PACK), labels and task carried over, the
    ESP32-S3 time estimated and said to be."""
    keras_file = Path(shutil.copy(zoo_models.keras_file("ds_cnn_kws"), tmp_path / "kws.keras"))
    labels = list(ZOO["ds_cnn_kws"].sidecar["labels"])
    keras_file.with_suffix(".json").write_text(
        json.dumps({"labels": labels, "task": "classification"})
    )
    cache = tmp_path / "cache"
    assert (
        _run(
            [
                "models",
                "split",
                str(keras_file),
                "--model-cache",
                str(cache),
                "--input-range",
                "-4",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "read as classification (sidecar, labels _silence_, _unknown_, yes" in out
    assert "esp32s3 time:" in out and "ESTIMATED from each op's work" in out
    (pkg,) = ModelPackage.list_cached(cache)
    assert pkg.model_id == "kws" and pkg.task.labels == tuple(labels)
    assert pkg.metadata["input_range"] == [-4.0, 4.0]
    assert not {op.op for op in pkg.ops} & {"SHAPE", "STRIDED_SLICE", "PACK"}
    assert pkg.input.shape == (1, 49, 10, 1)
