"""``OpContext``: one operator of the model as its encoder sees it, and the checks encoders share.

An encoder (``ops.ENCODERS``) either returns the op's 48-byte record or raises
``UnsupportedModelError`` saying why this instance of the operator cannot run in C; the
exporter collects those from every op before it refuses a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sciot_mqtt.models.errors import UnsupportedModelError
from sciot_mqtt.models.export.format import DTYPE_FLOAT32, DTYPE_INT8, DTYPE_INT32, BlobWriter
from sciot_mqtt.models.export.quant import activation_range
from sciot_mqtt.models.export.source import SourceTensor

__all__ = ["OpContext", "OpEncoder", "shape4"]


@dataclass(frozen=True, slots=True)
class OpContext:
    """One operator of the model, as its encoder sees it."""

    index: int  # in execution order
    name: str  # for messages: "CONV_2D", "CUSTOM:x", ...
    ins: list[int]  # tensor indices, -1 for an omitted optional input
    outs: list[int]
    options: Any  # the op's builtinOptions (a schema.*OptionsT), or None
    tensors: Sequence[SourceTensor]
    writer: BlobWriter
    # The rounding LiteRT's GEMMs (CONV_2D, FULLY_CONNECTED) use on the machine the blob
    # must match.
    conv_rounding: int

    def refuse(self, why: str) -> UnsupportedModelError:
        """The error for this op: ``raise ctx.refuse("...")``."""
        return UnsupportedModelError(f"op {self.index} ({self.name}): {why}")

    def operands(self, inputs: int, outputs: int = 1) -> tuple[list[int], list[int]]:
        """The op's input and output tensors, which must be exactly this many."""
        if len(self.ins) != inputs or len(self.outs) != outputs:
            raise self.refuse(f"needs {_count(inputs, 'input')} and {_count(outputs, 'output')}")
        return self.ins, self.outs

    def typed(self, tensor: int, dtype: int, what: str) -> SourceTensor:
        """Tensor ``tensor``, which must have blob dtype ``dtype`` (``what`` names it)."""
        if tensor < 0:
            raise self.refuse(f"its {what} is missing")
        t = self.tensors[tensor]
        if t.dtype != dtype:
            raise self.refuse(f"{what} tensor {tensor} is not {_DTYPE_NAMES.get(dtype, dtype)}")
        return t

    def int8(self, tensor: int, what: str) -> SourceTensor:
        """Tensor ``tensor``, which must be int8 and quantized per tensor."""
        t = self.typed(tensor, DTYPE_INT8, what)
        if not t.scales or (len(t.scales) == 1 and t.scale <= 0.0):
            raise self.refuse(f"{what} tensor {tensor} is not quantized")
        if len(t.scales) > 1:
            raise self.refuse(f"{what} tensor {tensor} is quantized per channel")
        return t

    def constant(self, tensor: int, dtype: int, what: str) -> np.ndarray:
        """The values of constant tensor ``tensor``, of blob dtype ``dtype``."""
        if tensor < 0 or self.tensors[tensor].data is None:
            raise self.refuse(f"its {what} must be a constant")
        t = self.typed(tensor, dtype, what)
        np_dtype = {DTYPE_INT8: "i1", DTYPE_INT32: "<i4", DTYPE_FLOAT32: "<f4"}[dtype]
        return np.frombuffer(t.data or b"", np_dtype).reshape(t.shape)

    def fused_activation(self, output: SourceTensor) -> tuple[int, int]:
        """The output's clamp bounds from the op's fused activation."""
        act = int(self.options.fusedActivationFunction)
        return activation_range(act, output.scale, output.zero_point)


OpEncoder = Callable[[OpContext], bytes]

_DTYPE_NAMES = {DTYPE_INT8: "int8", DTYPE_INT32: "int32", DTYPE_FLOAT32: "float32"}


def _count(n: int, what: str) -> str:
    words = {1: "one", 2: "two", 3: "three", 4: "four"}
    return f"{words.get(n, n)} {what}{'' if n == 1 else 's'}"


def shape4(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """``shape`` right-aligned into four dimensions, leading ones (C: ``sciot_dims4``)."""
    if len(shape) > 4:
        raise UnsupportedModelError(f"shape {tuple(shape)} has more than 4 dimensions")
    a, b, c, d = (1,) * (4 - len(shape)) + tuple(shape)
    return a, b, c, d
