"""A model prepared for split execution: its manifest, where its segments are, its I/O.

``ModelPackage.prepare(path)`` hashes the ``.tflite`` file and looks for the package in the
cache (``models.cache``); if there is none it cuts the model (``models.cutter``) and
installs the package there. Everything else answers questions about a prepared package.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.models.cache import (
    PackageFiles,
    cache_root,
    cached_packages,
    file_sha256,
    install,
    read_package,
    update_metadata,
)
from sciot_mqtt.models.cutter import cut_model
from sciot_mqtt.models.decode import Detection, decode_detections
from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.inputs import InputFormat
from sciot_mqtt.models.manifest import Manifest, TensorSpec
from sciot_mqtt.models.tasks import OutputSummary, TaskSpec, summarize, task_spec

__all__ = ["ModelPackage", "check_metadata"]


@dataclass(slots=True, kw_only=True)
class ModelPackage(Manifest):
    """A cut, cached model: what the device and the edge need to split it anywhere."""

    directory: Path  # <cache>/<sha256>

    # -- construction -------------------------------------------------------------------

    @classmethod
    def prepare(
        cls,
        path: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        model_id: str | None = None,
    ) -> ModelPackage:
        """Cut ``path`` (an int8 ``.tflite``) into segments, or load them from the cache.

        ``model_id`` defaults to the ``model_id`` of a ``<name>.json`` sidecar next to the
        model, else the file stem. Idempotent; when cached it costs a hash of the file.
        """
        src = Path(path)
        if not src.is_file():
            raise ModelError(f"model file not found: {src}")
        if src.suffix.lower() != ".tflite":
            raise ModelError(
                f"{src} is not a .tflite file; convert Keras models first "
                "(`sciot-mqtt models split` does both)"
            )
        root = cache_root(cache_dir)
        sha = file_sha256(src)
        sidecar = _read_sidecar(src)
        resolved_id = model_id or str(sidecar.get("model_id") or src.stem)
        target = root / sha
        manifest = read_package(target)
        if manifest is None:
            model_bytes = src.read_bytes()
            if hashlib.sha256(model_bytes).hexdigest() != sha:
                raise ModelError(f"{src} changed while it was being prepared")
            cut = cut_model(model_bytes, sha256=sha, model_id=resolved_id, metadata=sidecar)
            check_metadata(cut.manifest)  # before anything is written
            install(root, sha, cut.write)
            manifest = read_package(target)
            if manifest is None:
                raise ModelError(f"prepared package in {target} failed to load")
        elif sidecar and sidecar != manifest.metadata:
            # The sidecar was edited (labels, task, ...) since the model was cut: it wins.
            manifest.metadata = sidecar
            check_metadata(manifest)
            update_metadata(target, manifest)
        # The same file may be served under several ids; the package is cut once.
        manifest.model_id = resolved_id
        return cls._located(target, manifest)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ModelPackage:
        """Open an already prepared package directory (``<cache>/<sha256>``)."""
        manifest = read_package(Path(directory))
        if manifest is None:
            raise ModelError(f"{directory} is not a prepared model package")
        return cls._located(Path(directory), manifest)

    @classmethod
    def list_cached(cls, cache_dir: str | os.PathLike[str] | None = None) -> list[ModelPackage]:
        return [cls._located(d, m) for d, m in cached_packages(cache_root(cache_dir))]

    @classmethod
    def _located(cls, directory: Path, manifest: Manifest) -> ModelPackage:
        return cls(
            directory=directory, **{f.name: getattr(manifest, f.name) for f in fields(Manifest)}
        )

    # -- description --------------------------------------------------------------------

    @property
    def split_points(self) -> range:
        """Every boundary 0..N is a valid split point."""
        return range(self.num_ops + 1)

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.outputs[0]

    @property
    def files(self) -> PackageFiles:
        return PackageFiles(self.directory)

    @property
    def model_path(self) -> Path:
        return self.files.model

    @property
    def labels(self) -> list[str]:
        """Name of each output channel (index = class id), when the sidecar gives them."""
        return list(self.metadata.get("labels", []))

    def op_segment_path(self, op_index: int) -> Path:
        if not 0 <= op_index < self.num_ops:
            raise ModelError(f"op {op_index} outside 0..{self.num_ops - 1}")
        return self.files.op_segment(op_index)

    def tail_segment_path(self, boundary: int) -> Path:
        if not 0 <= boundary < self.num_ops:
            raise ModelError(f"no tail segment at boundary {boundary} (0..{self.num_ops - 1})")
        return self.files.tail_segment(boundary)

    def manifest(self) -> dict[str, Any]:
        """``manifest.json`` as it was written."""
        data: dict[str, Any] = json.loads(self.files.manifest.read_text())
        return data

    def reference_ms(self, start: int = 0, stop: int | None = None) -> float | None:
        """Reference device time of ops ``[start, stop)``, if a profile is mapped."""
        ops = self.ops[start:stop]
        if any(op.reference_ms is None for op in ops):
            return None
        return float(sum(op.reference_ms or 0.0 for op in ops))

    @property
    def task(self) -> TaskSpec:
        """What the (first) output means: from the sidecar, else inferred (``tasks``)."""
        return task_spec(self)

    @property
    def input_format(self) -> InputFormat:
        """How to feed the (first) input: image or tensor, and its real range (``inputs``)."""
        return InputFormat.of(self.input, self.metadata)

    # -- data helpers -------------------------------------------------------------------

    def quantize_input(self, array: np.ndarray) -> np.ndarray:
        """An image of any size, or an array of the input's shape, as the input tensor
        (see ``InputFormat.to_tensor``)."""
        return self.input_format.to_tensor(array)

    def summarize(self, output: np.ndarray) -> OutputSummary:
        """An output as this model's task reads it: detections, top classes, or stats."""
        return summarize(self.task, self.output, output)

    def decode(self, output: np.ndarray, threshold: float = 0.5) -> list[Detection]:
        """A FOMO grid output -> detections (``decode_detections``); FOMO models only.

        For any model, ``summarize`` reads the output as its task says."""
        return decode_detections(output, spec=self.output, threshold=threshold)


def check_metadata(manifest: Manifest) -> None:
    """``ModelError`` unless the sidecar's task and input fields fit the model."""
    task_spec(manifest)
    InputFormat.of(manifest.inputs[0], manifest.metadata)


def _read_sidecar(model_path: Path) -> dict[str, Any]:
    sidecar = model_path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text())
    except ValueError as exc:
        raise ModelError(f"bad metadata file {sidecar}: {exc}") from exc
    return data if isinstance(data, dict) else {}
