"""Small TFLite graphs written directly with the flatbuffer schema, for operator tests.

The Keras converter picks scales, zero points and layouts itself; a test of one operator
wants to choose them (a negative zero point, a per-channel filter, a fused RELU6, an odd
pool window), and wants dozens of variants without TensorFlow's start-up. ``GraphBuilder``
writes exactly the graph asked for, which LiteRT then runs like any converted model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

__all__ = ["GraphBuilder", "Tensor"]

_TYPES = {
    "int8": schema.TensorType.INT8,
    "int32": schema.TensorType.INT32,
    "int64": schema.TensorType.INT64,
    "float32": schema.TensorType.FLOAT32,
}


@dataclass
class Tensor:
    """A tensor of the graph: an activation, or a constant when ``data`` is given."""

    shape: tuple[int, ...]
    dtype: str = "int8"
    scale: float | Sequence[float] | None = None
    zero_point: int | Sequence[int] = 0
    data: np.ndarray | None = None
    quantized_dimension: int = 0
    name: str = ""


@dataclass
class _Op:
    code: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: Any


@dataclass
class GraphBuilder:
    """Tensors and operators added in order; ``build`` returns the ``.tflite`` bytes."""

    tensors: list[Tensor] = field(default_factory=list)
    ops: list[_Op] = field(default_factory=list)

    def tensor(self, t: Tensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def act(self, shape: Sequence[int], scale: float, zero_point: int) -> int:
        """An int8 activation tensor quantized per tensor."""
        return self.tensor(Tensor(tuple(shape), "int8", scale, zero_point))

    def const(self, data: np.ndarray, scale: Any = None, zero_point: Any = 0, **kw: Any) -> int:
        dtype = str(np.asarray(data).dtype)
        return self.tensor(
            Tensor(tuple(np.shape(data)), dtype, scale, zero_point, np.asarray(data), **kw)
        )

    def op(
        self,
        code: int,
        inputs: Sequence[int],
        outputs: Sequence[int],
        options_type: int = schema.BuiltinOptions.NONE,
        options: Any = None,
    ) -> None:
        self.ops.append(_Op(code, list(inputs), list(outputs), options_type, options))

    def build(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        model = schema.ModelT()
        model.version = 3
        model.description = "sciot test graph"
        codes: list[int] = []
        buffers = [schema.BufferT()]  # buffer 0: the empty buffer of every activation
        sg = schema.SubGraphT()
        sg.name = "main"
        sg.tensors = []
        for k, t in enumerate(self.tensors):
            st = schema.TensorT()
            st.name = t.name or f"t{k}"
            st.shape = np.asarray(t.shape, np.int32)
            st.type = _TYPES[t.dtype]
            st.buffer = 0
            if t.data is not None:
                buf = schema.BufferT()
                buf.data = np.frombuffer(
                    np.ascontiguousarray(t.data).astype(t.data.dtype.newbyteorder("<")).tobytes(),
                    np.uint8,
                )
                buffers.append(buf)
                st.buffer = len(buffers) - 1
            if t.scale is not None:
                q = schema.QuantizationParametersT()
                scales = np.atleast_1d(np.asarray(t.scale, np.float32))
                zps = np.atleast_1d(np.asarray(t.zero_point, np.int64))
                if len(zps) == 1 and len(scales) > 1:
                    zps = np.repeat(zps, len(scales))
                q.scale = scales
                q.zeroPoint = zps
                q.quantizedDimension = t.quantized_dimension
                st.quantization = q
            sg.tensors.append(st)
        sg.operators = []
        for o in self.ops:
            if o.code not in codes:
                codes.append(o.code)
            so = schema.OperatorT()
            so.opcodeIndex = codes.index(o.code)
            so.inputs = np.asarray(o.inputs, np.int32)
            so.outputs = np.asarray(o.outputs, np.int32)
            so.builtinOptionsType = o.options_type
            so.builtinOptions = o.options
            sg.operators.append(so)
        sg.inputs = np.asarray(inputs, np.int32)
        sg.outputs = np.asarray(outputs, np.int32)
        model.subgraphs = [sg]
        model.buffers = buffers
        model.operatorCodes = []
        for code in codes:
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(
                code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
            )
            oc.version = 1
            model.operatorCodes.append(oc)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())
