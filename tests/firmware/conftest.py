"""Build the C firmware pieces once per session with CMake, into pytest's temp directory.

``cmake_build`` is shared: a fixture for another CMake project under firmware-bridge/ calls
it the same way. Without cmake or a C compiler the C tests skip and say why.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.models.export import export_blob
from sciot_mqtt.models.package import ModelPackage

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-bridge"
OPS = FIRMWARE / "ops"


def require_toolchain() -> None:
    missing = [tool for tool in ("cmake", "cc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"C toolchain missing ({', '.join(missing)}): apt-get install cmake gcc")


def cmake_build(source: Path, build: Path, *options: str) -> Path:
    """Configure and build ``source`` into ``build``; the build log is in the failure."""
    require_toolchain()
    jobs = str(min(2, os.cpu_count() or 1))
    for cmd in (
        ["cmake", "-S", str(source), "-B", str(build), *options],
        ["cmake", "--build", str(build), "--parallel", jobs],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return build


@pytest.fixture(scope="session")
def sciot_ops_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """firmware-bridge/ops built optimized, with its ctypes library and test tools."""
    return cmake_build(OPS, tmp_path_factory.mktemp("ops-release"), "-DCMAKE_BUILD_TYPE=Release")


@pytest.fixture(scope="session")
def sciot_ops_sanitized_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with AddressSanitizer and UndefinedBehaviorSanitizer (abort on a finding)."""
    return cmake_build(
        OPS,
        tmp_path_factory.mktemp("ops-asan"),
        "-DCMAKE_BUILD_TYPE=Debug",
        "-DSCIOT_OPS_SANITIZE=ON",
    )


@pytest.fixture(scope="session")
def fomo96_package(sciot_models: dict[str, ModelPackage]) -> ModelPackage:
    """The zoo model, prepared in the session's model cache (the plugin's `sciot_models`)."""
    return sciot_models["fomo96"]


@pytest.fixture(scope="session")
def tiny_classifier_package(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    """A non-FOMO model with every operator of the firmware's set (tiny_classifier.py), built
    with TensorFlow and prepared in a cache of its own."""
    pytest.importorskip("tensorflow", reason="the `build` extra builds the test classifier")
    from tests.firmware.tiny_classifier import build_tiny_classifier

    root = tmp_path_factory.mktemp("tiny-classifier")
    path = build_tiny_classifier(root / "tiny_classifier.tflite")
    return ModelPackage.prepare(path, root / "cache", model_id="tiny_classifier")


@pytest.fixture(scope="session")
def fomo96_blob(fomo96_package: ModelPackage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo model exported as a sciot model blob file."""
    path = tmp_path_factory.mktemp("blob") / "fomo96_model.bin"
    path.write_bytes(export_blob(fomo96_package))
    return path


# sciot_ops.h sciot_model_err
MODEL_E_TRUNCATED, MODEL_E_MALFORMED, MODEL_E_UNSUPPORTED, MODEL_E_IO, MODEL_E_ARENA = 4, 5, 6, 7, 8
MODEL_E_ARG, MODEL_E_MAGIC, MODEL_E_VERSION = 1, 2, 3
SIZE_MISMATCH = -1  # pyshim: the concatenated buffers are not the boundary's size

Tensors = dict[int, np.ndarray]


class COps:
    """The ctypes face of firmware-bridge/ops/tests/pyshim.c over one blob."""

    def __init__(self, library: Path, blob: bytes, package: ModelPackage) -> None:
        self.lib = lib = ctypes.CDLL(str(library))
        buf, size, uint = ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint
        lib.sct_open.argtypes = [buf, size]
        lib.sct_arena_size.argtypes = [buf, size]
        lib.sct_arena_size.restype = ctypes.c_long
        run = [buf, size, uint, uint, buf, size, ctypes.c_void_p, size, ctypes.c_void_p, size]
        lib.sct_run.argtypes = run
        lib.sct_run_timed.argtypes = [*run, ctypes.POINTER(ctypes.c_uint32), uint]
        lib.sct_model_info.argtypes = [
            buf,
            size,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.sct_boundary_tensor.argtypes = [
            buf,
            size,
            uint,
            uint,
            ctypes.POINTER(ctypes.c_int32),
            ctypes.POINTER(ctypes.c_float),
        ]
        u32s = ctypes.POINTER(ctypes.c_uint32)
        lib.sct_run_io.argtypes = [
            buf, size, uint, uint, uint, u32s, u32s, buf, uint, u32s, u32s, ctypes.c_void_p,
            ctypes.c_void_p, size,
        ]  # fmt: skip
        lib.sct_op_name.argtypes = [buf, size, uint]
        lib.sct_op_name.restype = ctypes.c_char_p
        self.package = package
        self.set_blob(blob)

    def set_blob(self, blob: bytes) -> None:
        self.blob = blob
        self._blob = ctypes.create_string_buffer(blob, len(blob))

    def open_error(self, blob: bytes) -> int:
        return int(self.lib.sct_open(blob, len(blob)))

    @property
    def arena_size(self) -> int:
        return int(self.lib.sct_arena_size(self._blob, len(self.blob)))

    def run_raw(
        self, start: int, stop: int, data: bytes, out_len: int, arena_len: int | None = None
    ) -> tuple[int, bytes]:
        arena_len = self.arena_size if arena_len is None else arena_len
        arena = ctypes.create_string_buffer(max(arena_len, 1))
        out = ctypes.create_string_buffer(max(out_len, 1))
        rc = self.lib.sct_run(
            self._blob,
            len(self.blob),
            start,
            stop,
            data,
            len(data),
            out,
            out_len,
            arena,
            arena_len,
        )
        return int(rc), out.raw[:out_len]

    def run(self, start: int, stop: int, tensors: Mapping[int, np.ndarray]) -> Tensors:
        """Ops [start, stop) from the tensors live at `start`; the tensors live at `stop`."""
        data = pack(self.package, start, tensors)
        rc, out = self.run_raw(start, stop, data, self.package.boundaries[stop].nbytes)
        assert rc == 0, f"sciot_model_run [{start}, {stop}) failed with sciot_model_err {rc}"
        return unpack(self.package, stop, out)


def pack(package: ModelPackage, split: int, tensors: Mapping[int, np.ndarray]) -> bytes:
    return b"".join(
        np.ascontiguousarray(tensors[t.index], dtype=t.np_dtype).tobytes()
        for t in package.boundaries[split].tensors
    )


def unpack(package: ModelPackage, split: int, data: bytes) -> Tensors:
    out, at = {}, 0
    for t in package.boundaries[split].tensors:
        out[t.index] = np.frombuffer(data[at : at + t.nbytes], t.np_dtype).reshape(t.shape)
        at += t.nbytes
    assert at == len(data)
    return out
