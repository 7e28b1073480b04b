"""The cache of prepared models: where it is, how a package directory is laid out, lookups.

Packages are keyed by the sha256 of the ``.tflite`` they were cut from::

    <cache>/<sha256>/manifest.json      ops, boundaries, live tensors, reference mapping
    <cache>/<sha256>/model.tflite       the model itself (run_whole, and `models list`)
    <cache>/<sha256>/model.json         the sidecar metadata, if the model had one
    <cache>/<sha256>/segments/op_0007.tflite    operator [7, 8)
    <cache>/<sha256>/segments/tail_0007.tflite  operators [7, N)

A package is written elsewhere and renamed into place (``install``), so a reader never
sees half of one and two processes preparing the same model do not trip over each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.manifest import Manifest

__all__ = [
    "CACHE_ENV",
    "PackageFiles",
    "cache_root",
    "cached_packages",
    "default_cache_dir",
    "file_sha256",
    "install",
    "read_package",
    "update_metadata",
]

#: Environment variable that moves the default cache root, for every command.
CACHE_ENV = "SCIOT_MODEL_CACHE"
#: Its old name for `sciot-mqtt models`, still read (deprecated).
_DEPRECATED_CACHE_ENV = "SCIOT_MQTT_MODEL_CACHE"


def default_cache_dir() -> Path:
    """``$SCIOT_MODEL_CACHE``, else ``$XDG_CACHE_HOME/sciot-mqtt/models``, else ~/.cache."""
    env = os.environ.get(CACHE_ENV) or os.environ.get(_DEPRECATED_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sciot-mqtt" / "models"


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir`` if given, else the default."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class PackageFiles:
    """The files of the package in ``directory``."""

    directory: Path

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def model(self) -> Path:
        return self.directory / "model.tflite"

    @property
    def sidecar(self) -> Path:
        return self.directory / "model.json"

    @property
    def segments(self) -> Path:
        return self.directory / "segments"

    def op_segment(self, op_index: int) -> Path:
        return self.segments / f"op_{op_index:04d}.tflite"

    def tail_segment(self, boundary: int) -> Path:
        return self.segments / f"tail_{boundary:04d}.tflite"

    def complete(self, num_ops: int) -> bool:
        """Whether the model and every segment of a ``num_ops`` graph are there."""
        files = [self.model]
        files += [self.op_segment(i) for i in range(num_ops)]
        files += [self.tail_segment(s) for s in range(num_ops)]
        return all(f.is_file() for f in files)


def read_package(directory: Path) -> Manifest | None:
    """The manifest of the complete package in ``directory``; None if there is none."""
    files = PackageFiles(directory)
    try:
        manifest = Manifest.from_dict(json.loads(files.manifest.read_text()))
    except (OSError, ValueError, AttributeError, ModelError):
        return None  # absent, not JSON, not an object, another format or damaged
    return manifest if files.complete(manifest.num_ops) else None


def cached_packages(root: Path) -> list[tuple[Path, Manifest]]:
    """Every complete package under ``root``, by directory name."""
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and len(child.name) == 64:
            manifest = read_package(child)
            if manifest is not None:
                found.append((child, manifest))
    return found


def install(root: Path, sha: str, write: Callable[[PackageFiles], None]) -> None:
    """Have ``write`` fill a fresh directory, then make it ``<root>/<sha>``.

    If a complete package is there already (another process finished first) it is kept:
    it may be in use. A stale one (older format or damaged) is replaced.
    """
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=root))
    try:
        write(PackageFiles(tmp))
        target = root / sha
        if read_package(target) is not None:
            return
        if target.exists():
            # Move it aside first: rename onto a non-empty directory fails.
            stale = Path(tempfile.mkdtemp(prefix=f".stale-{sha[:12]}-", dir=root))
            # If this fails, another process replaced it meanwhile.
            with contextlib.suppress(OSError):
                target.rename(stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if read_package(target) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def update_metadata(directory: Path, manifest: Manifest) -> None:
    """Rewrite the package's sidecar and manifest with ``manifest.metadata``.

    Each file is written aside and renamed over the old one, so a reader sees the old
    package or the new one; the segments do not change.
    """
    files = PackageFiles(directory)
    stored = Manifest.from_dict(json.loads(files.manifest.read_text()))
    stored.metadata = manifest.metadata
    _replace(files.sidecar, json.dumps(manifest.metadata, indent=1) + "\n")
    _replace(files.manifest, json.dumps(stored.to_dict(), indent=1) + "\n")


def _replace(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
