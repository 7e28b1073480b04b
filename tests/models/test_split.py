"""Every split point of a real int8 model: head then tail is bit-identical to the whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models import (
    ModelError,
    ModelPackage,
    SegmentRunner,
    SyntheticScenes,
    UnsupportedModelError,
    zoo_model_path,
)
from sciot_mqtt.models.reference import load_reference_profiles


def _inputs(pkg: ModelPackage, n: int = 4) -> list[np.ndarray]:
    if pkg.input.shape == (1, 96, 96, 3):
        scenes = SyntheticScenes(seed=7)
        return [pkg.quantize_input(scenes.sample()[0]) for _ in range(n)]
    rng = np.random.default_rng(11)
    if pkg.input.dtype == "float32":
        return [rng.uniform(0.0, 1.0, pkg.input.shape).astype(np.float32) for _ in range(n)]
    info = np.iinfo(pkg.input.np_dtype)
    return [
        rng.integers(info.min, info.max + 1, pkg.input.shape, dtype=pkg.input.np_dtype)
        for _ in range(n)
    ]


def test_head_then_tail_is_bit_identical_at_every_split(package: ModelPackage) -> None:
    runner = SegmentRunner(package)
    assert len(package.boundaries) == package.num_ops + 1
    for x in _inputs(package):
        whole = runner.run_whole_outputs(x)
        assert np.array_equal(runner.run_whole(x), whole[package.outputs[0].name])
        for s in package.split_points:
            live, op_seconds = runner.run_head(s, x)
            assert len(op_seconds) == s
            assert all(t >= 0.0 for t in op_seconds)
            split = runner.run_tail_outputs(s, live)
            assert split.keys() == whole.keys()
            for name, expected in whole.items():
                got = split[name]
                assert got.dtype == expected.dtype and got.shape == expected.shape
                assert np.array_equal(got, expected), f"split {s}, output {name}"
            assert np.array_equal(runner.run_tail(s, live), whole[package.outputs[0].name])


def test_boundary_sizes_are_the_live_tensors(package: ModelPackage) -> None:
    runner = SegmentRunner(package)
    x = _inputs(package, 1)[0]
    for b in package.boundaries:
        live, _ = runner.run_head(b.index, x)
        assert list(live) == [t.name for t in b.tensors]
        for spec in b.tensors:
            arr = live[spec.name]
            assert arr.shape == spec.shape and arr.dtype == spec.np_dtype
            assert arr.nbytes == spec.nbytes
        assert b.nbytes == sum(a.nbytes for a in live.values())
    assert [t.index for t in package.boundaries[0].tensors] == [package.input.index]
    end = {t.index for t in package.boundaries[-1].tensors}
    assert end == {t.index for t in package.outputs}


def test_zoo_manifest(zoo_package: ModelPackage) -> None:
    pkg = zoo_package
    assert pkg.model_id == "fomo96"
    assert pkg.input.dtype == "int8" and pkg.input.shape == (1, 96, 96, 3)
    assert pkg.output.dtype == "int8" and pkg.output.shape == (1, 12, 12, 3)
    assert pkg.ops[0].op == "CONV_2D" and pkg.ops[-1].op == "SOFTMAX"
    assert {op.op for op in pkg.ops} == {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SOFTMAX"}
    # Residual blocks: the skip tensor travels next to the branch.
    assert max(len(b.tensors) for b in pkg.boundaries) == 2
    assert pkg.boundaries[0].nbytes == 96 * 96 * 3
    assert pkg.boundaries[-1].nbytes == 12 * 12 * 3
    manifest = pkg.manifest()
    assert manifest["sha256"] == pkg.sha256
    assert len(manifest["ops"]) == pkg.num_ops
    for i in range(pkg.num_ops):
        assert pkg.op_segment_path(i).is_file() and pkg.tail_segment_path(i).is_file()


def test_zoo_ops_map_onto_reference_layers(zoo_package: ModelPackage) -> None:
    (profile,) = [p for p in load_reference_profiles() if p.id == zoo_package.reference]
    mapped = [name for op in zoo_package.ops for name in op.reference_layers]
    # Every measured layer belongs to exactly one op, and in execution order.
    assert mapped == [layer.name for layer in profile.layers]
    assert zoo_package.ops[0].reference_layers == ("Conv1", "bn_Conv1", "Conv1_relu")
    padded = [op for op in zoo_package.ops if "block_1_pad" in op.reference_layers]
    assert padded[0].op == "DEPTHWISE_CONV_2D"
    assert zoo_package.ops[-1].reference_layers == ("softmax",)
    total = sum(layer.ms for layer in profile.layers)
    assert zoo_package.reference_ms() == pytest.approx(total, abs=1e-6)
    assert total == pytest.approx(profile.total_ms, abs=0.05)  # the file's own rounded total


def test_branchy_model_has_multi_tensor_boundaries(branchy_package: ModelPackage) -> None:
    counts = [len(b.tensors) for b in branchy_package.boundaries]
    assert max(counts) >= 2
    ops = {op.op for op in branchy_package.ops}
    assert {"ADD", "CONCATENATION"} <= ops
    # Not the reference architecture: no made-up mapping.
    assert branchy_package.reference is None
    assert all(op.reference_layers == () for op in branchy_package.ops)
    assert branchy_package.reference_ms() is None


def test_prepare_is_idempotent_and_cached(tmp_path: Path) -> None:
    src = zoo_model_path()
    first = ModelPackage.prepare(src, tmp_path)
    assert first.directory == tmp_path / first.sha256
    seg = first.op_segment_path(3)
    mtime = seg.stat().st_mtime_ns
    start = time.perf_counter()
    second = ModelPackage.prepare(src, tmp_path)
    assert time.perf_counter() - start < 0.5
    assert seg.stat().st_mtime_ns == mtime
    assert second.manifest() == first.manifest()
    assert second.boundaries == first.boundaries and second.ops == first.ops
    assert [p.sha256 for p in ModelPackage.list_cached(tmp_path)] == [first.sha256]
    # A damaged cache entry is rebuilt, not trusted.
    seg.unlink()
    third = ModelPackage.prepare(src, tmp_path)
    assert third.op_segment_path(3).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_prepare_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        ModelPackage.prepare(tmp_path / "missing.tflite", tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelError, match=r"not a \.tflite"):
        ModelPackage.prepare(text, tmp_path)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        ModelPackage.prepare(garbage, tmp_path)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(zoo_model_path().read_bytes()[:30_000])
    with pytest.raises(ModelError, match="cannot parse"):
        ModelPackage.prepare(truncated, tmp_path)


def test_tensors_off_the_wire_types_are_refused(tmp_path: Path) -> None:
    """Split-point tensors travel as wire Tensors: a type the protocol lacks is refused,
    both when a model is cut and when a manifest is read back."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(zoo_model_path().read_bytes()), 0)
    sg = model.subgraphs[0]
    sg.tensors[sg.outputs[0]].type = schema.TensorType.INT64
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    wide = tmp_path / "wide.tflite"
    wide.write_bytes(bytes(builder.Output()))
    with pytest.raises(UnsupportedModelError, match="has type int64; a split point carries"):
        ModelPackage.prepare(wide, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()

    pkg = ModelPackage.prepare(zoo_model_path(), tmp_path / "cache")
    manifest = json.loads((pkg.directory / "manifest.json").read_text())
    manifest["outputs"][0]["dtype"] = "int64"
    (pkg.directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="not a prepared model package"):
        ModelPackage.load(pkg.directory)
    # prepare() does not trust it either: it cuts the model again.
    assert ModelPackage.prepare(zoo_model_path(), tmp_path / "cache").output.dtype == "int8"


def test_run_tail_validates_payload(zoo_package: ModelPackage) -> None:
    runner = SegmentRunner(zoo_package)
    x = _inputs(zoo_package, 1)[0]
    live, _ = runner.run_head(5, x)
    (name,) = live
    with pytest.raises(ModelError, match="missing"):
        runner.run_tail(5, {})
    with pytest.raises(ModelError, match="wants int8"):
        runner.run_tail(5, {name: live[name].astype(np.float32)})
    with pytest.raises(ModelError, match="wants shape"):
        runner.run_tail(5, {name: live[name].ravel()[:-1]})
    # A flat buffer of the right size (as it arrives off the wire) is accepted.
    assert np.array_equal(runner.run_tail(5, {name: live[name].ravel()}), runner.run_whole(x))
    with pytest.raises(ModelError, match="outside"):
        runner.run_head(zoo_package.num_ops + 1, x)


def test_quantize_input_matches_the_input_quantization(zoo_package: ModelPackage) -> None:
    img = SyntheticScenes(seed=1).sample()[0]
    q = zoo_package.quantize_input(img)
    assert q.shape == (1, 96, 96, 3) and q.dtype == np.int8
    # Input scale is 1/255 with zero point -128: pixel p is stored as p - 128.
    assert np.array_equal(q[0].astype(np.int16), img.astype(np.int16) - 128)
    assert np.array_equal(zoo_package.quantize_input(img.astype(np.float32) / 255.0), q)
    assert zoo_package.quantize_input(q) is not None


def test_split_and_runtime_do_not_import_tensorflow(tmp_path: Path) -> None:
    code = (
        "import json, sys, numpy as np\n"
        "from sciot_mqtt.models import ModelPackage, SegmentRunner, SyntheticScenes, "
        "decode_detections, zoo_model_path\n"
        f"pkg = ModelPackage.prepare(zoo_model_path(), {str(tmp_path)!r})\n"
        "r = SegmentRunner(pkg)\n"
        "x = pkg.quantize_input(SyntheticScenes(0).sample()[0])\n"
        "live, _ = r.run_head(9, x)\n"
        "assert np.array_equal(r.run_tail(9, live), r.run_whole(x))\n"
        "decode_detections(r.run_whole(x), spec=pkg.output)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps(bad))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIOT_")}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        timeout=60,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
