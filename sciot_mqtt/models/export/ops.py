"""Operator records of the blob: one encoder per builtin operator the C kernels implement.

An encoder checks that the operator is one its C kernel runs, derives the kernel's
constants (placing its parameters in the blob) and returns the op's 48-byte record.
Supporting a new operator is one encoder here and its row in ``ENCODERS``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import ModelError, UnsupportedModelError
from sciot_mqtt.models.export.format import (
    DTYPE_INT8,
    DTYPE_INT32,
    OP_ADD,
    OP_CONV,
    OP_DEPTHWISE,
    OP_SOFTMAX,
    BlobWriter,
    op_record,
)
from sciot_mqtt.models.export.quant import (
    ROUNDING_DOUBLE,
    activation_range,
    channel_multipliers,
    f32,
    quantize_multiplier,
    softmax_table,
)
from sciot_mqtt.models.export.source import SourceTensor
from sciot_mqtt.models.graph import builtin_op_name

__all__ = ["ENCODERS", "OpContext", "OpEncoder", "conv_geometry", "encode_op"]


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
    # The rounding LiteRT's CONV_2D (a ruy GEMM) uses on the machine the blob must match.
    conv_rounding: int

    def operands(self, inputs: int, outputs: int = 1) -> tuple[list[int], list[int]]:
        """The op's input and output tensors, which must be exactly this many."""
        if len(self.ins) != inputs or len(self.outs) != outputs:
            raise UnsupportedModelError(
                f"op {self.index}: {self.name} needs {_count(inputs, 'input')} and "
                f"{_count(outputs, 'output')}"
            )
        return self.ins, self.outs

    def int8(self, tensor: int, what: str) -> SourceTensor:
        """Tensor ``tensor``, which must be int8 (``what`` names it in the error)."""
        t = self.tensors[tensor]
        if t.dtype != DTYPE_INT8:
            raise UnsupportedModelError(f"op {self.index}: {what} tensor {tensor} is not int8")
        return t

    def fused_activation(self, output: SourceTensor) -> tuple[int, int]:
        """The output's clamp bounds from the op's fused activation."""
        act = int(self.options.fusedActivationFunction)
        return activation_range(act, output.scale, output.zero_point)


OpEncoder = Callable[[OpContext], bytes]


def _count(n: int, what: str) -> str:
    words = {1: "one", 2: "two", 3: "three", 4: "four"}
    return f"{words.get(n, n)} {what}{'' if n == 1 else 's'}"


def encode_op(code: int, ctx: OpContext) -> bytes:
    """The record of ``ctx``'s operator, builtin ``code``; refused unless in ``ENCODERS``."""
    encoder = ENCODERS.get(code)
    if encoder is None:
        names = [builtin_op_name(c) for c in ENCODERS]
        raise UnsupportedModelError(
            f"op {ctx.index} is {ctx.name}; sciot_ops implements "
            f"{', '.join(names[:-1])} and {names[-1]}"
        )
    return encoder(ctx)


def conv_geometry(
    padding: int, size: int, filt: int, stride: int, dilation: int
) -> tuple[int, int]:
    """Output size and leading (top/left) padding along one axis (``ComputePaddingWithOffset``)."""
    eff = (filt - 1) * dilation + 1
    if padding == schema.Padding.SAME:
        out = (size + stride - 1) // stride
    else:
        out = (size + stride - eff) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2


def _convolution(ctx: OpContext, op_type: int, rounding: int) -> bytes:
    i, ins, outs, opts = ctx.index, ctx.ins, ctx.outs, ctx.options
    if len(ins) < 2 or len(outs) != 1:
        raise UnsupportedModelError(f"op {i}: convolution needs input, filter and one output")
    x = ctx.int8(ins[0], "input")
    f = ctx.int8(ins[1], "filter")
    y = ctx.int8(outs[0], "output")
    bias = ctx.tensors[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None
    if f.data is None or (bias is not None and (bias.data is None or bias.dtype != DTYPE_INT32)):
        raise UnsupportedModelError(f"op {i}: filter and int32 bias must be constants")
    if len(x.shape) != 4 or len(f.shape) != 4 or len(y.shape) != 4 or x.shape[0] != 1:
        raise UnsupportedModelError(f"op {i}: convolution wants 4-D tensors, batch 1")
    channels = y.shape[3]
    stride_w, stride_h = int(opts.strideW), int(opts.strideH)
    dil_w, dil_h = int(opts.dilationWFactor), int(opts.dilationHFactor)
    kh, kw = f.shape[1], f.shape[2]
    oh, pad_h = conv_geometry(opts.padding, x.shape[1], kh, stride_h, dil_h)
    ow, pad_w = conv_geometry(opts.padding, x.shape[2], kw, stride_w, dil_w)
    if (oh, ow) != (y.shape[1], y.shape[2]):
        raise ModelError(f"op {i}: output shape {y.shape} does not follow from the padding")
    depth_multiplier = 0
    if op_type == OP_CONV:
        if f.shape[0] != channels or f.shape[3] != x.shape[3]:
            raise UnsupportedModelError(f"op {i}: grouped convolution is not supported")
    else:
        depth_multiplier = int(opts.depthMultiplier)
        if f.shape[3] != channels or channels != x.shape[3] * depth_multiplier:
            raise ModelError(f"op {i}: depthwise filter {f.shape} does not match its tensors")
    if y.scale == 0.0 or x.scale == 0.0:
        raise UnsupportedModelError(f"op {i}: input and output must be per-tensor quantized")
    if f.zero_point != 0:
        raise UnsupportedModelError(f"op {i}: filter zero point must be 0")
    multipliers, shifts = channel_multipliers(x.scale, f.scales, y.scale, channels)
    params = struct.pack(f"<{channels}i{channels}i", *multipliers, *shifts)
    return op_record(
        op_type,
        ins,
        outs,
        rounding=rounding,
        stride=(stride_w, stride_h),
        dilation=(dil_w, dil_h),
        pad=(pad_w, pad_h),
        depth_multiplier=depth_multiplier,
        act=ctx.fused_activation(y),
        params=ctx.writer.params(params),
    )


def _conv_2d(ctx: OpContext) -> bytes:
    return _convolution(ctx, OP_CONV, ctx.conv_rounding)


def _depthwise_conv_2d(ctx: OpContext) -> bytes:
    # TFLite's own depthwise kernel, which keeps the reference rounding.
    return _convolution(ctx, OP_DEPTHWISE, ROUNDING_DOUBLE)


def _add(ctx: OpContext) -> bytes:
    i = ctx.index
    ins, outs = ctx.operands(2)
    a = ctx.int8(ins[0], "input")
    b = ctx.int8(ins[1], "input")
    y = ctx.int8(outs[0], "output")
    if a.shape != b.shape or a.shape != y.shape:
        raise UnsupportedModelError(f"op {i}: broadcasting ADD is not supported")
    # add.cc Prepare for int8: the max is taken in float, the ratios in double.
    twice_max = float(np.float32(2) * max(np.float32(a.scale), np.float32(b.scale)))
    left_shift = 20
    m1, s1 = quantize_multiplier(f32(a.scale) / twice_max)
    m2, s2 = quantize_multiplier(f32(b.scale) / twice_max)
    out_real = twice_max / float(np.float32((1 << left_shift) * np.float32(y.scale)))
    mo, so = quantize_multiplier(out_real)
    params = struct.pack("<7i", left_shift, m1, s1, m2, s2, mo, so)
    return op_record(
        OP_ADD,
        ins,
        outs,
        rounding=ROUNDING_DOUBLE,  # TFLite's own kernel, the reference rounding
        act=ctx.fused_activation(y),
        params=ctx.writer.params(params),
    )


def _softmax(ctx: OpContext) -> bytes:
    i = ctx.index
    ins, outs = ctx.operands(1)
    x = ctx.int8(ins[0], "input")
    y = ctx.int8(outs[0], "output")
    if x.shape != y.shape:
        raise ModelError(f"op {i}: softmax input and output shapes differ")
    table = softmax_table(x.scale, float(ctx.options.beta))
    params = table.astype("<f4").tobytes()
    return op_record(OP_SOFTMAX, ins, outs, params=ctx.writer.params(params))


#: Builtin operator -> its encoder. The order is the one error messages list them in.
ENCODERS: dict[int, OpEncoder] = {
    schema.BuiltinOperator.CONV_2D: _conv_2d,
    schema.BuiltinOperator.DEPTHWISE_CONV_2D: _depthwise_conv_2d,
    schema.BuiltinOperator.ADD: _add,
    schema.BuiltinOperator.SOFTMAX: _softmax,
}
