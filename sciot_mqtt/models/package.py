"""A model prepared for split execution: manifest plus per-op and tail segments, cached.

``ModelPackage.prepare(path)`` hashes the ``.tflite`` file and looks in
``<cache>/<sha256>/`` for a manifest; if there is none it cuts the model (no TensorFlow)
and writes, atomically::

    <cache>/<sha256>/manifest.json      ops, boundaries, live tensors, reference mapping
    <cache>/<sha256>/model.tflite       the model itself (run_whole, and `models list`)
    <cache>/<sha256>/model.json         the sidecar metadata, if the model had one
    <cache>/<sha256>/segments/op_0007.tflite    operator [7, 8)
    <cache>/<sha256>/segments/tail_0007.tflite  operators [7, N)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.graph import TensorInfo, TfliteGraph
from sciot_mqtt.models.reference import map_reference_layers
from sciot_mqtt.protocol.messages import Dtype

if TYPE_CHECKING:  # decode imports this module
    from sciot_mqtt.models.decode import Detection

__all__ = [
    "CACHE_ENV",
    "MANIFEST_FORMAT",
    "Boundary",
    "ModelPackage",
    "OpInfo",
    "TensorSpec",
    "default_cache_dir",
    "file_sha256",
]

#: Environment variable that moves the default cache root.
CACHE_ENV = "SCIOT_MQTT_MODEL_CACHE"
#: Bumped whenever the manifest layout or the way segments are cut changes; a cached
#: package of another format is rebuilt.
MANIFEST_FORMAT = 1

_NP_DTYPES = {
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "bool": np.bool_,
}


def default_cache_dir() -> Path:
    """``$SCIOT_MQTT_MODEL_CACHE``, else ``$XDG_CACHE_HOME/sciot-mqtt/models``, else ~/.cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sciot-mqtt" / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor crossing a boundary (or a model input/output)."""

    name: str
    shape: tuple[int, ...]
    dtype: Dtype  # a wire dtype: "int8", "uint8", "int16", "int32", "float32"
    scale: float  # 0.0 when not quantized
    zero_point: int
    nbytes: int
    index: int  # tensor index in the model's main subgraph; stable and short

    @property
    def np_dtype(self) -> np.dtype[Any]:
        try:
            return np.dtype(_NP_DTYPES[self.dtype])
        except KeyError:
            raise ModelError(f"tensor {self.name!r}: unsupported dtype {self.dtype}") from None

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Real values -> this tensor's stored type (round half away from zero, like TFLite)."""
        values = np.asarray(values, dtype=np.float64)
        if self.scale == 0.0:
            return values.astype(self.np_dtype)
        scaled = values / self.scale
        q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + self.zero_point
        info = np.iinfo(self.np_dtype)
        out: np.ndarray = np.clip(q, info.min, info.max).astype(self.np_dtype)
        return out

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        if self.scale == 0.0:
            return values.astype(np.float32)
        return ((values.astype(np.float32) - self.zero_point) * self.scale).astype(np.float32)

    def check(self, array: np.ndarray) -> np.ndarray:
        """``array`` as this tensor expects it; a missing batch dim is added."""
        array = np.asarray(array)
        if array.dtype != self.np_dtype:
            raise ModelError(f"tensor {self.name!r} wants {self.dtype}, got {array.dtype}")
        if array.shape != self.shape:
            if array.size != int(np.prod(self.shape)):
                raise ModelError(
                    f"tensor {self.name!r} wants shape {self.shape}, got {array.shape}"
                )
            array = array.reshape(self.shape)
        return array

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "nbytes": self.nbytes,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        return cls(
            name=str(d["name"]),
            shape=tuple(int(x) for x in d["shape"]),
            dtype=cast(Dtype, str(d["dtype"])),
            scale=float(d["scale"]),
            zero_point=int(d["zero_point"]),
            nbytes=int(d["nbytes"]),
            index=int(d["index"]),
        )


@dataclass(frozen=True, slots=True)
class OpInfo:
    """One operator of the deployed graph, in execution order."""

    index: int
    op: str  # builtin op name, e.g. "CONV_2D"; "CUSTOM:<code>" for custom ops
    inputs: tuple[int, ...]  # activation tensors it reads (indices), weights excluded
    outputs: tuple[int, ...]  # tensors it produces that are used later
    reference_layers: tuple[str, ...] = ()  # Keras layers of the reference profile it fuses
    reference_ms: float | None = None  # their summed time in the reference profile

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "op": self.op,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "reference_layers": list(self.reference_layers),
            "reference_ms": self.reference_ms,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpInfo:
        ms = d.get("reference_ms")
        return cls(
            index=int(d["index"]),
            op=str(d["op"]),
            inputs=tuple(int(x) for x in d["inputs"]),
            outputs=tuple(int(x) for x in d["outputs"]),
            reference_layers=tuple(d.get("reference_layers", ())),
            reference_ms=None if ms is None else float(ms),
        )


@dataclass(frozen=True, slots=True)
class Boundary:
    """Split point ``s``: before op ``s``; the device has run ops ``[0, s)``."""

    index: int
    tensors: list[TensorSpec]  # live across the boundary: what the device sends
    # The subset of `tensors` the fused tail [s, N) reads (the rest are graph outputs
    # already computed on the device), and the graph outputs the tail computes.
    tail_inputs: tuple[int, ...] = ()
    tail_outputs: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "nbytes": self.nbytes,
            "tensors": [t.to_dict() for t in self.tensors],
            "tail_inputs": list(self.tail_inputs),
            "tail_outputs": list(self.tail_outputs),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Boundary:
        return cls(
            index=int(d["index"]),
            tensors=[TensorSpec.from_dict(t) for t in d["tensors"]],
            tail_inputs=tuple(int(x) for x in d.get("tail_inputs", ())),
            tail_outputs=tuple(int(x) for x in d.get("tail_outputs", ())),
        )


@dataclass(slots=True)
class ModelPackage:
    """A cut, cached model: what the device and the edge need to split it anywhere."""

    model_id: str
    sha256: str
    directory: Path  # <cache>/<sha256>
    model_bytes: int
    ops: list[OpInfo]
    boundaries: list[Boundary]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    reference: str | None = None  # id of the reference profile mapped onto ops
    metadata: dict[str, Any] = field(default_factory=dict)  # the model.json sidecar, if any

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
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        sha = file_sha256(src)
        sidecar = _read_sidecar(src)
        resolved_id = model_id or str(sidecar.get("model_id") or src.stem)
        target = root / sha
        pkg = cls._load_if_valid(target)
        if pkg is None:
            model_bytes = src.read_bytes()
            if hashlib.sha256(model_bytes).hexdigest() != sha:
                raise ModelError(f"{src} changed while it was being prepared")
            cls._build(model_bytes, sha, resolved_id, sidecar, root)
            pkg = cls._load_if_valid(target)
            if pkg is None:
                raise ModelError(f"prepared package in {target} failed to load")
        pkg.model_id = resolved_id
        if sidecar and not pkg.metadata:
            pkg.metadata = sidecar
        return pkg

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ModelPackage:
        """Open an already prepared package directory (``<cache>/<sha256>``)."""
        pkg = cls._load_if_valid(Path(directory))
        if pkg is None:
            raise ModelError(f"{directory} is not a prepared model package")
        return pkg

    @classmethod
    def list_cached(cls, cache_dir: str | os.PathLike[str] | None = None) -> list[ModelPackage]:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        if not root.is_dir():
            return []
        found = []
        for child in sorted(root.iterdir()):
            if child.is_dir() and len(child.name) == 64:
                pkg = cls._load_if_valid(child)
                if pkg is not None:
                    found.append(pkg)
        return found

    # -- description --------------------------------------------------------------------

    @property
    def num_ops(self) -> int:
        return len(self.ops)

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
    def model_path(self) -> Path:
        return self.directory / "model.tflite"

    @property
    def labels(self) -> list[str]:
        """Name of each output channel (index = class id), when the sidecar gives them."""
        return list(self.metadata.get("labels", []))

    def op_segment_path(self, op_index: int) -> Path:
        if not 0 <= op_index < self.num_ops:
            raise ModelError(f"op {op_index} outside 0..{self.num_ops - 1}")
        return self.directory / "segments" / f"op_{op_index:04d}.tflite"

    def tail_segment_path(self, boundary: int) -> Path:
        if not 0 <= boundary < self.num_ops:
            raise ModelError(f"no tail segment at boundary {boundary} (0..{self.num_ops - 1})")
        return self.directory / "segments" / f"tail_{boundary:04d}.tflite"

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.directory / "manifest.json").read_text())
        return data

    def reference_ms(self, start: int = 0, stop: int | None = None) -> float | None:
        """Reference device time of ops ``[start, stop)``, if a profile is mapped."""
        ops = self.ops[start:stop]
        if any(op.reference_ms is None for op in ops):
            return None
        return float(sum(op.reference_ms or 0.0 for op in ops))

    # -- data helpers -------------------------------------------------------------------

    def quantize_input(self, array: np.ndarray) -> np.ndarray:
        """Camera image or float input -> the model's input tensor (batch dim added).

        ``uint8`` arrays are taken as pixels, mapped to the float range the model was
        trained on (the sidecar's ``input_range``, default ``[0, 1]``) and quantized. Float
        arrays are taken as that float input already. An array already of the input's
        stored type (e.g. ``int8``) is passed through.
        """
        spec = self.input
        array = np.asarray(array)
        if array.dtype == spec.np_dtype:
            return spec.check(array)
        if array.dtype == np.uint8:
            lo, hi = (float(v) for v in self.metadata.get("input_range", (0.0, 1.0)))
            values = array.astype(np.float64) * ((hi - lo) / 255.0) + lo
        elif np.issubdtype(array.dtype, np.floating):
            values = array.astype(np.float64)
        else:
            raise ModelError(f"cannot quantize a {array.dtype} array for input {spec.dtype}")
        return spec.check(spec.quantize(values))

    def decode(self, output: np.ndarray, threshold: float = 0.5) -> list[Detection]:
        """FOMO output -> detections (see ``decode_detections``)."""
        from sciot_mqtt.models.decode import decode_detections

        return decode_detections(output, spec=self.output, threshold=threshold)

    # -- cache internals ----------------------------------------------------------------

    @classmethod
    def _load_if_valid(cls, directory: Path) -> ModelPackage | None:
        manifest_path = directory / "manifest.json"
        try:
            data = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            return None
        if data.get("format") != MANIFEST_FORMAT:
            return None
        try:
            pkg = cls(
                model_id=str(data["model_id"]),
                sha256=str(data["sha256"]),
                directory=directory,
                model_bytes=int(data["model_bytes"]),
                ops=[OpInfo.from_dict(o) for o in data["ops"]],
                boundaries=[Boundary.from_dict(b) for b in data["boundaries"]],
                inputs=[TensorSpec.from_dict(t) for t in data["inputs"]],
                outputs=[TensorSpec.from_dict(t) for t in data["outputs"]],
                reference=data.get("reference"),
                metadata=dict(data.get("metadata") or {}),
            )
        except (KeyError, TypeError, ValueError):
            return None
        files = [pkg.model_path]
        files += [pkg.op_segment_path(i) for i in range(pkg.num_ops)]
        files += [pkg.tail_segment_path(s) for s in range(pkg.num_ops)]
        if not all(f.is_file() for f in files):
            return None
        return pkg

    @classmethod
    def _build(
        cls,
        model_bytes: bytes,
        sha: str,
        model_id: str,
        sidecar: dict[str, Any],
        root: Path,
    ) -> None:
        graph = TfliteGraph(model_bytes)
        names = _unique_names(graph)

        def spec(t: int) -> TensorSpec:
            info: TensorInfo = graph.tensor(t)
            return TensorSpec(
                name=names[t],
                shape=info.shape,
                dtype=cast(Dtype, info.dtype),
                scale=info.scale,
                zero_point=info.zero_point,
                nbytes=info.nbytes,
                index=t,
            )

        mapping = map_reference_layers(
            [[graph.tensor(t).name for t in outs] for outs in graph.op_outputs]
        )
        profile = mapping[0] if mapping else None
        layer_ms = {la.name: la.ms for la in profile.layers} if profile else {}
        ops = []
        for i in range(graph.num_ops):
            seg_in, seg_out = graph.op_segment_io(i)
            layers = tuple(mapping[1][i]) if mapping else ()
            ops.append(
                OpInfo(
                    index=i,
                    op=graph.op_names[i],
                    inputs=tuple(seg_in),
                    outputs=tuple(seg_out),
                    reference_layers=layers,
                    reference_ms=round(sum(layer_ms[n] for n in layers), 6) if profile else None,
                )
            )
        boundaries = []
        for s in range(graph.num_ops + 1):
            tail_in, tail_out = graph.tail_segment_io(s) if s < graph.num_ops else ([], [])
            boundaries.append(
                Boundary(
                    index=s,
                    tensors=[spec(t) for t in graph.live_at(s)],
                    tail_inputs=tuple(tail_in),
                    tail_outputs=tuple(tail_out),
                )
            )
        manifest = {
            "format": MANIFEST_FORMAT,
            "model_id": model_id,
            "sha256": sha,
            "model_bytes": len(model_bytes),
            "num_ops": graph.num_ops,
            "inputs": [spec(t).to_dict() for t in graph.inputs],
            "outputs": [spec(t).to_dict() for t in graph.outputs],
            "reference": profile.id if profile else None,
            "reference_device": profile.device if profile else None,
            "metadata": sidecar,
            "ops": [op.to_dict() for op in ops],
            "boundaries": [b.to_dict() for b in boundaries],
        }

        root.mkdir(parents=True, exist_ok=True)
        # Build next to the target and rename into place, so a reader never sees half a
        # package and two processes preparing the same model do not trip over each other.
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=root))
        try:
            (tmp / "segments").mkdir()
            (tmp / "model.tflite").write_bytes(model_bytes)
            if sidecar:
                (tmp / "model.json").write_text(json.dumps(sidecar, indent=1) + "\n")
            for i in range(graph.num_ops):
                seg_in, seg_out = graph.op_segment_io(i)
                data = graph.cut(i, i + 1, seg_in, seg_out)
                (tmp / "segments" / f"op_{i:04d}.tflite").write_bytes(data)
            for s in range(graph.num_ops):
                tail_in, tail_out = graph.tail_segment_io(s)
                data = graph.cut(s, graph.num_ops, tail_in, tail_out)
                (tmp / "segments" / f"tail_{s:04d}.tflite").write_bytes(data)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            target = root / sha
            if cls._load_if_valid(target) is not None:
                return  # another process finished first; its package may be in use
            if target.exists():
                # Stale (older format or damaged): move it aside first; rename onto a
                # non-empty directory fails.
                stale = Path(tempfile.mkdtemp(prefix=f".stale-{sha[:12]}-", dir=root))
                # If this fails, another process replaced it meanwhile.
                with contextlib.suppress(OSError):
                    target.rename(stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            try:
                tmp.rename(target)
            except OSError:
                if cls._load_if_valid(target) is None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _read_sidecar(model_path: Path) -> dict[str, Any]:
    sidecar = model_path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text())
    except ValueError as exc:
        raise ModelError(f"bad metadata file {sidecar}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _unique_names(graph: TfliteGraph) -> dict[int, str]:
    """Tensor names, made unique: TFLite does not promise unique (or any) names."""
    counts: dict[str, int] = {}
    for t in range(graph.num_tensors):
        n = graph.tensor(t).name
        counts[n] = counts.get(n, 0) + 1
    return {
        t: (
            graph.tensor(t).name
            if counts[graph.tensor(t).name] == 1
            else f"{graph.tensor(t).name}#{t}"
        )
        for t in range(graph.num_tensors)
    }
