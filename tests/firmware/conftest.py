"""Build the C firmware pieces once per session with CMake, into pytest's temp directory.

``cmake_build`` is shared: a fixture for another CMake project under firmware-bridge/ calls
it the same way. Without cmake or a C compiler the C tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sciot_mqtt.models.catalog import resolve_package
from sciot_mqtt.models.export_c import export_blob
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
def fomo96_package() -> ModelPackage:
    return resolve_package("fomo96")


@pytest.fixture(scope="session")
def fomo96_blob(fomo96_package: ModelPackage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo model exported as a sciot model blob file."""
    path = tmp_path_factory.mktemp("blob") / "fomo96_model.bin"
    path.write_bytes(export_blob(fomo96_package))
    return path
