"""The test zoo's third-party architectures (tests/zoo) through `export-c` and the C kernels.

For each model: the export succeeds (the command, and the C sources compile), and the C
operators are bit-exact with LiteRT on every operator alone, on every split point's head
[0, s) and tail [s, N), and on the whole model, for an input of the model's own range and
one of full-range noise; the sanitized driver runs whole models and some splits under
ASan + UBSan, and thousands of bit-flipped copies of each blob are refused or run cleanly.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.models.export import export_blob, export_c
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.runtime import SegmentRunner
from tests.firmware.conftest import COps, Tensors, pack, unpack
from tests.zoo.builders import ZOO, ZooModels, representative

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-bridge"


def _frames(name: str, package: ModelPackage) -> list[tuple[str, Tensors]]:
    """An input drawn from the model's own float range, quantized as the device does, and
    full-range noise (every int8 value; floats well outside the range)."""
    (spec,) = package.inputs
    sample = representative(ZOO[name], spec.shape[1:], n=1).reshape(spec.shape)
    rng = np.random.default_rng(5)
    if spec.np_dtype == np.float32:
        noise = rng.uniform(-3, 4, spec.shape).astype(np.float32)
        own = sample.astype(np.float32)
    else:
        noise = rng.integers(-128, 128, spec.shape, dtype=np.int8)
        own = np.clip(np.round(sample / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)
    return [("own", {spec.index: own}), ("noise", {spec.index: noise})]


class ZooRun:
    """One zoo model prepared, exported, and run op by op through LiteRT for each frame."""

    def __init__(self, name: str, zoo: ZooModels, library: Path, out: Path) -> None:
        self.name = name
        self.package = zoo.package(name)
        self.files = export_c(self.package, out)
        assert self.files.blob is not None, self.files.blob_refused
        self.blob = self.files.blob.read_bytes()
        self.c_ops = COps(library, self.blob, self.package)
        self.runner = SegmentRunner(self.package)
        self.bounds: dict[str, list[Tensors]] = {}
        pkg = self.package
        for frame_name, frame in _frames(name, pkg):
            (x,) = frame.values()
            bounds = [dict(frame)]
            for s in range(1, pkg.num_ops + 1):
                head, _ = self.runner.run_head(s, x)
                bounds.append({t.index: head[t.name] for t in pkg.boundaries[s].tensors})
            self.bounds[frame_name] = bounds


@pytest.fixture(scope="module")
def zoo_runs(
    zoo_models: ZooModels, sciot_ops_build: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ZooRun]:
    library = sciot_ops_build / "libsciot_ops_py.so"
    out = tmp_path_factory.mktemp("zoo-export")
    return {name: ZooRun(name, zoo_models, library, out / name) for name in ZOO}


def _assert_same(got: Tensors, want: Tensors, what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: tensor sets differ"
    for index, value in got.items():
        expected = np.asarray(want[index]).reshape(value.shape)
        if value.tobytes() != expected.tobytes():
            differ = int(np.count_nonzero(value != expected))
            pytest.fail(f"{what}: tensor {index} differs in {differ} of {value.size} elements")


def test_export_c_succeeds_and_its_sources_compile(
    zoo_runs: dict[str, ZooRun], zoo_name: str
) -> None:
    run = zoo_runs[zoo_name]
    assert run.blob == export_blob(run.package)  # deterministic
    # (the segment tables describe their tensors with the firmware's sciot_tensor)
    cc = ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", "/dev/null", "-c"]
    cc += [f"-I{FIRMWARE / 'core' / 'include'}", f"-I{FIRMWARE / 'generated'}"]
    for source in (run.files.model_c, run.files.segments_c):
        assert source is not None
        done = subprocess.run([*cc, str(source)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def test_every_operator_alone(zoo_runs: dict[str, ZooRun], zoo_name: str) -> None:
    run = zoo_runs[zoo_name]
    for frame, bounds in run.bounds.items():
        for op in run.package.ops:
            got = run.c_ops.run(op.index, op.index + 1, bounds[op.index])
            _assert_same(got, bounds[op.index + 1], f"{zoo_name} {frame}: op {op.index} ({op.op})")


def test_every_split_head_and_tail_and_the_whole_model(
    zoo_runs: dict[str, ZooRun], zoo_name: str
) -> None:
    run = zoo_runs[zoo_name]
    pkg = run.package
    n = pkg.num_ops
    for frame, bounds in run.bounds.items():
        whole = run.c_ops.run(0, n, bounds[0])
        _assert_same(whole, bounds[n], f"{zoo_name} {frame}: whole model")
        (x,) = bounds[0].values()
        litert_whole = run.runner.run_whole_outputs(x)
        want = {t.index: litert_whole[t.name] for t in pkg.outputs}
        _assert_same(whole, want, f"{zoo_name} {frame}: whole model, LiteRT in one piece")
        for s in pkg.split_points:
            head = run.c_ops.run(0, s, bounds[0])
            _assert_same(head, bounds[s], f"{zoo_name} {frame}: head [0, {s})")
            tail = run.c_ops.run(s, n, head)
            litert_tail = run.runner.run_tail_outputs(
                s, {t.name: bounds[s][t.index] for t in pkg.boundaries[s].tensors}
            )
            _assert_same(
                tail,
                {t.index: litert_tail[t.name] for t in pkg.outputs},
                f"{zoo_name} {frame}: tail [{s}, {n})",
            )


def test_sanitized_whole_model_and_splits(
    zoo_runs: dict[str, ZooRun], zoo_name: str, sciot_ops_sanitized_build: Path
) -> None:
    run = zoo_runs[zoo_name]
    pkg = run.package
    n = pkg.num_ops
    driver = sciot_ops_sanitized_build / "sciot_ops_run"
    bounds = run.bounds["noise"]
    for start, stop in [(0, n), (0, n // 3), (n // 3, n), (n // 2, n // 2 + 1)]:
        done = subprocess.run(
            [str(driver), str(run.files.blob), str(start), str(stop)],
            input=pack(pkg, start, bounds[start]),
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        _assert_same(unpack(pkg, stop, done.stdout), bounds[stop], f"sanitized [{start}, {stop})")


def test_damaged_blobs_are_refused_or_run_in_bounds(
    zoo_runs: dict[str, ZooRun], zoo_name: str, sciot_ops_sanitized_build: Path
) -> None:
    """Bit flips in every kind of record the zoo's operators use: refused, or run without
    an out-of-bounds access or undefined behaviour (ASan/UBSan exit 86/87 otherwise)."""
    env = {"ASAN_OPTIONS": "exitcode=86", "UBSAN_OPTIONS": "exitcode=87:print_stacktrace=1"}
    driver = sciot_ops_sanitized_build / "sciot_ops_run"
    done = subprocess.run(
        [str(driver), "--damage", str(zoo_runs[zoo_name].files.blob), "2000", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = re.fullmatch(r"2000 rounds, (\d+) accepted, (\d+) ran\n", done.stdout)
    assert found is not None, done.stdout
    assert int(found.group(2)) > 50


def test_export_c_command_on_a_zoo_model(
    zoo_models: ZooModels, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """A user's model file straight to C: `models export-c FILE.tflite`."""
    path = zoo_models.tflite("ds_cnn_kws")
    done = subprocess.run(
        [sys.executable, "-m", "sciot_mqtt", "models", "export-c", str(path), "--out",
         str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "measured on op" in done.stdout
    assert (tmp_path / "out" / "ds_cnn_kws_model.bin").stat().st_size > 0
