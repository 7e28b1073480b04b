"""`sciot-mqtt models export-c` and the blob of models other than the zoo's whole graph.

The exporter must be deterministic, its C arrays must hold exactly the blob and the
package's per-op segments, and it must export any supported int8 graph (here: pieces cut
from the zoo model, with several inputs) so that the C ops still match LiteRT, and leave out
the blob of a model with operators the C kernels lack, saying which.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models.errors import UnsupportedModelError
from sciot_mqtt.models.export import (
    ROUNDING_DOUBLE,
    ROUNDING_DOUBLE_TIES_UP,
    ROUNDING_SINGLE,
    ROUNDINGS,
    detect_conv_rounding,
    export_blob,
    requantize,
)
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.runtime import SegmentRunner
from tests.firmware.conftest import COps
from tests.firmware.tflite_build import GraphBuilder


def test_blob_export_is_deterministic(fomo96_package: ModelPackage, fomo96_blob: Path) -> None:
    assert export_blob(fomo96_package) == fomo96_blob.read_bytes()


def _c_bytes(source: str, name: str) -> bytes:
    body = re.search(rf"{name}\[\d+\][^=]*=\s*\{{(.*?)\}};", source, re.S)
    assert body is not None, name
    return bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body.group(1)))


def test_export_c_command(
    tmp_path: Path, fomo96_package: ModelPackage, fomo96_blob: Path, cli_env: dict[str, str]
) -> None:
    out = tmp_path / "gen"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sciot_mqtt",
            "models",
            "export-c",
            "fomo96",
            "--out",
            str(out),
            "--cache-dir",
            str(fomo96_package.directory.parent),
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "fomo96_model.bin",
        "fomo96_model.c",
        "fomo96_model.h",
        "fomo96_segments.c",
        "fomo96_segments.h",
        "fomo96_tflm_ops.h",
        "sciot_exported_model.h",
    ]
    assert (out / "fomo96_model.bin").read_bytes() == fomo96_blob.read_bytes()
    for path in out.glob("*.[ch]"):
        assert "do not edit" in path.read_text().splitlines()[0]
    model_c = (out / "fomo96_model.c").read_text()
    assert _c_bytes(model_c, "sciot_fomo96_blob") == fomo96_blob.read_bytes()
    segments_c = (out / "fomo96_segments.c").read_text()
    for i in range(fomo96_package.num_ops):
        assert _c_bytes(segments_c, f"sciot_fomo96_op_{i:04d}") == (
            fomo96_package.op_segment_path(i).read_bytes()
        )
    # The table names each segment's inputs and outputs by manifest index, in its I/O order.
    rows = re.findall(
        r"\{sciot_fomo96_op_(\d{4}), sizeof \w+, (\d+), (\d+), \{([\d, ]+)\}, \{([\d, ]+)\}\}",
        segments_c,
    )
    assert len(rows) == fomo96_package.num_ops
    for (index, n_in, n_out, ins, outs), op in zip(rows, fomo96_package.ops, strict=True):
        assert int(index) == op.index
        assert [int(t) for t in ins.split(",")][: int(n_in)] == list(op.inputs)
        assert [int(t) for t in outs.split(",")][: int(n_out)] == list(op.outputs)
    # The generated sources compile cleanly as C99, for the host and for a 32-bit MCU.
    compilers = []
    if shutil.which("cc"):
        compilers.append(["cc"])
    if shutil.which("riscv64-unknown-elf-gcc"):
        compilers.append(
            ["riscv64-unknown-elf-gcc", "-march=rv32imc", "-mabi=ilp32", "-ffreestanding"]
        )
    if not compilers:
        pytest.skip("no C compiler to compile the generated sources")
    firmware = Path(__file__).resolve().parents[2] / "firmware-bridge"
    includes = [f"-I{firmware / 'core' / 'include'}", f"-I{firmware / 'generated'}"]
    for compiler in compilers:
        for source in ("fomo96_model.c", "fomo96_segments.c"):
            compiled = subprocess.run(
                [*compiler, "-std=c99", "-Wall", "-Wextra", "-Werror", *includes, "-c", source,
                 "-o", "/dev/null"],
                cwd=out,
                capture_output=True,
                text=True,
                check=False,
            )  # fmt: skip
            assert compiled.returncode == 0, compiled.stderr


def test_export_c_refuses_unknown_model(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sciot_mqtt", "models", "export-c", "nosuch", "--out",
         str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "nosuch" in done.stderr
    assert not (tmp_path / "out").exists()


def test_pieces_of_the_model_export_and_match_litert(
    tmp_path: Path, sciot_ops_build: Path, fomo96_package: ModelPackage
) -> None:
    """The tail [9, N) (two inputs, starting at an ADD) and the lone softmax, each prepared
    as a model of its own from its .tflite path, exported and run whole in C."""
    zoo = fomo96_package
    frame = zoo.quantize_input(next(synthetic_images(seed=5)))
    zoo_runner = SegmentRunner(zoo)
    library = sciot_ops_build / "libsciot_ops_py.so"
    for piece, split in ((zoo.tail_segment_path(9), 9), (zoo.op_segment_path(24), 24)):
        pkg = ModelPackage.prepare(piece, tmp_path / "cache", model_id=piece.stem)
        head, _ = zoo_runner.run_head(split, frame)
        given = {t.name: head[t.name] for t in pkg.inputs}
        assert len(given) == len(zoo.boundaries[split].tensors)
        c_ops = COps(library, export_blob(pkg), pkg)
        got = c_ops.run(0, pkg.num_ops, {t.index: given[t.name] for t in pkg.inputs})
        want = SegmentRunner(pkg).run_whole_outputs(given)
        for t in pkg.outputs:
            np.testing.assert_array_equal(got[t.index], want[t.name].reshape(t.shape))


def _unsupported_graph() -> bytes:
    """int8 ops sciot_ops does not implement (SUB twice, RELU) and one it implements but not
    in this form (ADD broadcasting a constant)."""
    b = GraphBuilder()
    x = b.act((1, 4, 4, 8), 0.05, -3)
    t1, t2, t3, y = (b.act((1, 4, 4, 8), 0.05, -3) for _ in range(4))
    c = b.const(np.arange(8, dtype=np.int8).reshape(1, 1, 1, 8), scale=0.05, zero_point=-3)
    add_opts = schema.AddOptionsT()
    sub_opts = schema.SubOptionsT()
    b.op(schema.BuiltinOperator.SUB, [x, x], [t1], schema.BuiltinOptions.SubOptions, sub_opts)
    b.op(schema.BuiltinOperator.RELU, [t1], [t2])
    b.op(schema.BuiltinOperator.SUB, [t2, x], [t3], schema.BuiltinOptions.SubOptions, sub_opts)
    b.op(schema.BuiltinOperator.ADD, [t3, c], [y], schema.BuiltinOptions.AddOptions, add_opts)
    return b.build([x], [y])


def test_every_unsupported_operator_is_listed_at_once_and_tflm_files_still_written(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    path = tmp_path / "unsupported.tflite"
    path.write_bytes(_unsupported_graph())
    pkg = ModelPackage.prepare(path, tmp_path / "cache")
    with pytest.raises(UnsupportedModelError) as refused:
        export_blob(pkg)
    message = str(refused.value)
    assert "does not implement 3 of the model's 4 operators" in message
    assert "SUB x2 (ops 0, 2)" in message
    assert "RELU x1 (op 1)" in message
    assert "op 3 (ADD): broadcasting ADD is not supported" in message
    assert "sciot_ops implements CONV_2D, DEPTHWISE_CONV_2D" in message
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "sciot_mqtt", "models", "export-c", str(path), "--out", str(out),
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
        check=False,
    )  # fmt: skip
    # The esp-tflite-micro runner needs no blob: the rest is written, and the blob's absence
    # is said with every operator that stopped it.
    assert done.returncode == 0, done.stderr
    assert "no sciot model blob" in done.stdout
    assert "SUB x2 (ops 0, 2)" in done.stdout and "RELU x1 (op 1)" in done.stdout
    assert "op 3 (ADD): broadcasting ADD is not supported" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "sciot_exported_model.h",
        "unsupported_segments.c",
        "unsupported_segments.h",
        "unsupported_tflm_ops.h",
    ]
    resolver = (out / "unsupported_tflm_ops.h").read_text()
    for method in ("AddSub", "AddRelu", "AddAdd"):
        assert f"resolver.{method}() == kTfLiteOk" in resolver
    assert "SUB x2 (ops 0, 2)" in (out / "sciot_exported_model.h").read_text()


def test_python_requantize_is_the_c_one(sciot_ops_build: Path) -> None:
    """detect_conv_rounding's numpy roundings agree with sciot_mul_quantized, edge cases too."""
    lib = ctypes.CDLL(str(sciot_ops_build / "libsciot_ops_py.so"))
    c_mul = lib.sciot_mul_quantized
    c_mul.argtypes = [ctypes.c_int, ctypes.c_int32, ctypes.c_int32, ctypes.c_int]
    c_mul.restype = ctypes.c_int32
    rng = np.random.default_rng(3)
    n = 3000
    acc = np.concatenate(
        [
            rng.integers(-(1 << 20), 1 << 20, n),
            rng.integers(-(1 << 31), 1 << 31, n),
            [-(1 << 31), (1 << 31) - 1, 0, -1, 1, -6, 6, 3],
        ]
    )
    mult = np.concatenate([rng.integers(1 << 30, 1 << 31, 2 * n), [1 << 30, (1 << 31) - 1] * 4])
    for rounding in (ROUNDING_DOUBLE, ROUNDING_SINGLE, ROUNDING_DOUBLE_TIES_UP):
        top = 7 if rounding == ROUNDING_SINGLE else 0
        shift = np.concatenate([rng.integers(-31, top + 1, 2 * n), [-1, -31, 0, top] * 2])
        want = requantize(acc, mult, shift, rounding)
        got = [
            c_mul(rounding, int(a), int(m), int(s))
            for a, m, s in zip(acc, mult, shift, strict=True)
        ]
        np.testing.assert_array_equal(np.asarray(got, np.int64), want, err_msg=str(rounding))


def test_conv_rounding_is_measured_and_recorded(
    tmp_path: Path, fomo96_package: ModelPackage, cli_env: dict[str, str]
) -> None:
    rounding, how = detect_conv_rounding(fomo96_package)
    assert rounding in ROUNDINGS.values()
    assert "measured on op 2 against LiteRT" in how  # fomo96's first 1x1 conv without ReLU
    # The op records carry it: CONV_2D ops get the measured rounding, the others theirs.
    blobs = {r: export_blob(fomo96_package, r) for r in ROUNDINGS.values()}
    assert blobs[rounding] == export_blob(fomo96_package)
    assert len(set(blobs.values())) == 3
    off_ops = int.from_bytes(blobs[rounding][24:28], "little")
    for op in fomo96_package.ops:
        record = blobs[rounding][off_ops + 48 * op.index : off_ops + 48 * op.index + 2]
        if op.op == "CONV_2D":
            assert record[1] == rounding
        elif op.op in ("DEPTHWISE_CONV_2D", "ADD"):
            assert record[1] == ROUNDING_DOUBLE
    done = subprocess.run(
        [sys.executable, "-m", "sciot_mqtt", "models", "export-c", "fomo96", "--out",
         str(tmp_path), "--conv-rounding", "single", "--cache-dir",
         str(fomo96_package.directory.parent)],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "CONV_2D rounding given: single" in done.stdout
    assert (tmp_path / "fomo96_model.bin").read_bytes() == blobs[ROUNDING_SINGLE]
