"""What a prepared model is: its operators, split points and tensors, and their JSON form.

``manifest.json`` in a package directory is ``Manifest.to_dict()``; reading it back
validates every field, so a package written by another version (or damaged) is refused
rather than half-read. A ``TensorSpec`` is a tensor that crosses a split point (or a model
input or output): it travels on the wire, so its dtype is the protocol's ``Dtype``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np

from sciot_mqtt.models.errors import ModelError, UnsupportedModelError
from sciot_mqtt.protocol.device_messages import Dtype

__all__ = [
    "MANIFEST_FORMAT",
    "Boundary",
    "Manifest",
    "OpInfo",
    "TensorSpec",
    "wire_dtype",
]

#: Bumped whenever the manifest layout or the way segments are cut changes; a cached
#: package of another format is rebuilt. 2: each op's work (MACs, elements in and out).
MANIFEST_FORMAT = 2

_NP_DTYPES: dict[Dtype, type[np.generic]] = {
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "int32": np.int32,
    "float32": np.float32,
}
assert set(_NP_DTYPES) == set(get_args(Dtype)), "one numpy type per wire dtype"


def wire_dtype(name: str, tensor: str) -> Dtype:
    """``name`` as a wire dtype; tensor ``tensor`` of another type cannot cross a split point."""
    for dtype in _NP_DTYPES:
        if name == dtype:
            return dtype
    raise UnsupportedModelError(
        f"tensor {tensor!r} has type {name}; a split point carries only "
        f"{', '.join(_NP_DTYPES)} tensors"
    )


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor crossing a boundary (or a model input/output)."""

    name: str
    shape: tuple[int, ...]
    dtype: Dtype
    scale: float  # 0.0 when not quantized
    zero_point: int
    nbytes: int
    index: int  # tensor index in the model's main subgraph; stable and short

    @property
    def np_dtype(self) -> np.dtype[Any]:
        return np.dtype(_NP_DTYPES[self.dtype])

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
        name = str(d["name"])
        return cls(
            name=name,
            shape=tuple(int(x) for x in d["shape"]),
            dtype=wire_dtype(str(d["dtype"]), name),
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
    # Its work, for estimating its time on a chip (``models.cost``).
    macs: int = 0  # multiply-accumulates (convolutions, dense layers; windows for pooling)
    elements_in: int = 0  # activation elements it reads
    elements_out: int = 0  # elements it writes

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "op": self.op,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "reference_layers": list(self.reference_layers),
            "reference_ms": self.reference_ms,
            "macs": self.macs,
            "elements_in": self.elements_in,
            "elements_out": self.elements_out,
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
            macs=int(d["macs"]),
            elements_in=int(d["elements_in"]),
            elements_out=int(d["elements_out"]),
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


@dataclass(slots=True, kw_only=True)
class Manifest:
    """A model cut for splitting: its operators, every split point, its inputs and outputs."""

    model_id: str
    sha256: str  # of the .tflite file the package was cut from
    model_bytes: int
    ops: list[OpInfo]
    boundaries: list[Boundary]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    reference: str | None = None  # id of the reference profile mapped onto ops
    reference_device: str | None = None  # the device that profile was measured on
    metadata: dict[str, Any] = field(default_factory=dict)  # the model.json sidecar, if any

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "model_id": self.model_id,
            "sha256": self.sha256,
            "model_bytes": self.model_bytes,
            "num_ops": self.num_ops,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "reference": self.reference,
            "reference_device": self.reference_device,
            "metadata": self.metadata,
            "ops": [op.to_dict() for op in self.ops],
            "boundaries": [b.to_dict() for b in self.boundaries],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        """The manifest ``d`` describes; ``ModelError`` if it is of another format or damaged."""
        if d.get("format") != MANIFEST_FORMAT:
            raise ModelError(f"manifest format {d.get('format')!r}, not {MANIFEST_FORMAT}")
        try:
            return cls(
                model_id=str(d["model_id"]),
                sha256=str(d["sha256"]),
                model_bytes=int(d["model_bytes"]),
                ops=[OpInfo.from_dict(o) for o in d["ops"]],
                boundaries=[Boundary.from_dict(b) for b in d["boundaries"]],
                inputs=[TensorSpec.from_dict(t) for t in d["inputs"]],
                outputs=[TensorSpec.from_dict(t) for t in d["outputs"]],
                reference=d.get("reference"),
                reference_device=d.get("reference_device"),
                metadata=dict(d.get("metadata") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"damaged manifest: {exc!r}") from exc
