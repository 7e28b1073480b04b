"""A prepared package's flatbuffer, read for export: its operators and its tensors with data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import ModelError, UnsupportedModelError
from sciot_mqtt.models.export.format import DTYPE_CODES
from sciot_mqtt.models.package import ModelPackage

__all__ = ["SourceModel", "SourceTensor", "builtin_code", "read_source"]


@dataclass(frozen=True, slots=True)
class SourceTensor:
    """A tensor of the main subgraph, as the blob records it."""

    dtype: int  # blob dtype code
    itemsize: int
    shape: tuple[int, ...]
    scale: float  # 0.0 unless quantized per tensor
    scales: list[float]  # every scale (one per channel for per-channel filters)
    zero_point: int
    data: bytes | None  # constant data

    @property
    def nbytes(self) -> int:
        return (
            int(np.prod(self.shape, dtype=np.int64)) * self.itemsize
            if self.shape
            else self.itemsize
        )


@dataclass(frozen=True, slots=True)
class SourceModel:
    model: Any  # schema.ModelT
    tensors: list[SourceTensor]

    @property
    def subgraph(self) -> Any:
        return self.model.subgraphs[0]

    @property
    def operators(self) -> list[Any]:
        return list(self.subgraph.operators or [])

    def op_code(self, op: Any) -> int:
        """The builtin operator ``op`` runs (``schema.BuiltinOperator``)."""
        return builtin_code(self.model.operatorCodes[op.opcodeIndex])


def builtin_code(operator_code: Any) -> int:
    # Codes past 127 live in builtinCode only; older files fill deprecatedBuiltinCode only.
    return max(int(operator_code.builtinCode), int(operator_code.deprecatedBuiltinCode))


def read_source(package: ModelPackage) -> SourceModel:
    """``package``'s model, checked against its manifest's sha256."""
    raw = package.model_path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    if hashlib.sha256(raw).hexdigest() != package.sha256:
        raise ModelError(f"{package.model_path} does not match the manifest; re-prepare it")
    for buf in model.buffers or []:
        if getattr(buf, "offset", 0) and buf.offset > 1:
            buf.data = np.frombuffer(raw, np.uint8, count=buf.size, offset=buf.offset).copy()
    return SourceModel(model, _tensors(model))


def _tensors(model: Any) -> list[SourceTensor]:
    sg = model.subgraphs[0]
    out = []
    for i, t in enumerate(sg.tensors):
        if int(t.type) not in DTYPE_CODES:
            raise UnsupportedModelError(
                f"tensor {i} has TFLite type {t.type}; the blob holds int8, uint8, int16, "
                "int32 and float32 tensors"
            )
        code, itemsize = DTYPE_CODES[int(t.type)]
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        if len(shape) > 4:
            raise UnsupportedModelError(f"tensor {i} has {len(shape)} dimensions (at most 4)")
        q = t.quantization
        scales = [float(s) for s in q.scale] if q is not None and q.scale is not None else []
        zps = [int(z) for z in q.zeroPoint] if q is not None and q.zeroPoint is not None else []
        buf = model.buffers[t.buffer] if 0 < t.buffer < len(model.buffers) else None
        data = None
        if buf is not None and buf.data is not None and len(buf.data):
            data = np.asarray(buf.data, dtype=np.uint8).tobytes()
        out.append(
            SourceTensor(
                dtype=code,
                itemsize=itemsize,
                shape=shape,
                scale=scales[0] if len(scales) == 1 else 0.0,
                scales=scales,
                zero_point=zps[0] if len(zps) == 1 else 0,
                data=data,
            )
        )
    return out
