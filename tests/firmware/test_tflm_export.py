"""What `models export-c` writes for the ESP32's esp-tflite-micro runner: the operators to
register come from the model itself, the split-point tables are the manifest's, and an
operator TFLite Micro has no kernel for is refused by name. (That the files compile against
the real esp-tflite-micro is .ci/run's ESP-IDF compile check.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.export.tflm import TFLM_ADD_METHODS
from sciot_mqtt.models.package import ModelPackage
from tests.firmware.tiny_classifier import OPERATORS

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-bridge"


def _export_c(model: str, out: Path, cache: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sciot_mqtt", "models", "export-c", model, "--out", str(out),
         "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_classifier_exports_its_own_operators_and_split_points(
    tmp_path: Path, tiny_classifier_package: ModelPackage, cli_env: dict[str, str]
) -> None:
    pkg = tiny_classifier_package
    out = tmp_path / "model"
    stdout = _export_c("tiny_classifier", out, pkg.directory.parent, cli_env)
    assert "memory budget of tiny_classifier" in stdout

    ops_h = (out / "tiny_classifier_tflm_ops.h").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(\) == kTfLiteOk", ops_h)
    assert sorted(calls) == sorted(TFLM_ADD_METHODS[op] for op in OPERATORS)
    assert f"MicroMutableOpResolver<{len(OPERATORS)}>" in ops_h

    # One table per split point, each tensor as the manifest describes it.
    segments_c = (out / "tiny_classifier_segments.c").read_text()
    for b in pkg.boundaries:
        table = re.search(
            rf"sciot_tiny_classifier_live_{b.index:04d}\[\] = \{{\n(.*?)\n\}};", segments_c, re.S
        )
        assert table is not None, b.index
        rows = re.findall(
            r"\{(\d+), SCIOT_DTYPE_(\w+), (\d+), \{([\d, ]+)\}, (\S+), (-?\d+), (\d+), NULL\}",
            table.group(1),
        )
        assert [
            (
                int(i),
                d.lower(),
                tuple(int(x) for x in shape.split(", ")),
                float(sc),
                int(zp),
                int(n),
            )
            for i, d, _, shape, sc, zp, n in rows
        ] == [(t.index, t.dtype, t.shape, t.scale, t.zero_point, t.nbytes) for t in b.tensors]
    assert f'"tiny_classifier", {pkg.num_ops}, sciot_tiny_classifier_op_segments' in segments_c

    exported = (out / "sciot_exported_model.h").read_text()
    assert "#define SCIOT_EXPORTED_SEGMENTED sciot_tiny_classifier_segmented" in exported
    assert "#define SCIOT_EXPORTED_TFLM_ADD_OPS sciot_tiny_classifier_tflm_add_ops" in exported
    has_blob = (out / "tiny_classifier_model.bin").exists()
    assert ("SCIOT_EXPORTED_BLOB" in exported) == has_blob
    assert ("no sciot model blob" in stdout) == (not has_blob)

    # The C parts compile as C99 against the firmware's headers.
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    compiled = subprocess.run(
        ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{FIRMWARE / 'core' / 'include'}",
         f"-I{FIRMWARE / 'generated'}", "-c", "tiny_classifier_segments.c", "-o", "/dev/null"],
        cwd=out,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr


def _as_custom(model_bytes: bytes, code: str) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    for op_code in model.operatorCodes:
        op_code.builtinCode = op_code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        op_code.customCode = code.encode()
    for op in model.subgraphs[0].operators:
        op.builtinOptionsType = schema.BuiltinOptions.NONE
        op.builtinOptions = None
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_an_operator_tflite_micro_lacks_is_refused_by_name(
    tmp_path: Path, fomo96_package: ModelPackage, cli_env: dict[str, str]
) -> None:
    path = tmp_path / "custom.tflite"
    path.write_bytes(_as_custom(fomo96_package.op_segment_path(24).read_bytes(), "MyOp"))
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
    assert done.returncode == 1
    assert "esp-tflite-micro has no builtin kernel for CUSTOM:MyOp" in done.stderr
    assert not out.exists()
