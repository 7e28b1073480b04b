"""Encoders of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (``ops.ENCODERS``)."""

from __future__ import annotations

import struct

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.export.context import OpContext
from sciot_mqtt.models.export.format import (
    DTYPE_INT32,
    OP_CONV,
    OP_DEPTHWISE,
    OP_FULLY_CONNECTED,
    op_record,
)
from sciot_mqtt.models.export.quant import (
    ROUNDING_DOUBLE,
    ROUNDING_DOUBLE_TIES_UP,
    channel_multipliers,
    f32,
    quantize_multiplier,
)
from sciot_mqtt.models.export.source import SourceTensor

__all__ = ["DEPTHWISE_BLOCK", "conv_2d", "conv_geometry", "depthwise_conv_2d", "fully_connected"]

#: Output channels LiteRT's depthwise requantizes per NEON block (SSE-emulated on x86-64).
DEPTHWISE_BLOCK = 8


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


def _bias(ctx: OpContext, channels: int) -> SourceTensor | None:
    """The optional int32 bias: a constant of ``channels`` values."""
    if len(ctx.ins) < 3 or ctx.ins[2] < 0:
        return None
    bias = ctx.tensors[ctx.ins[2]]
    if bias.data is None or bias.dtype != DTYPE_INT32 or bias.nbytes != 4 * channels:
        raise ctx.refuse(f"its bias must be {channels} int32 constants")
    return bias


def _convolution(ctx: OpContext, op_type: int, rounding: int) -> bytes:
    ins, outs, opts = ctx.ins, ctx.outs, ctx.options
    if len(ins) < 2 or len(outs) != 1:
        raise ctx.refuse("a convolution needs input, filter and one output")
    x = ctx.int8(ins[0], "input")
    f = ctx.typed(ins[1], x.dtype, "filter")
    y = ctx.int8(outs[0], "output")
    if f.data is None:
        raise ctx.refuse("its filter must be a constant")
    if len(x.shape) != 4 or len(f.shape) != 4 or len(y.shape) != 4 or x.shape[0] != 1:
        raise ctx.refuse("a convolution wants 4-D tensors, batch 1")
    channels = y.shape[3]
    _bias(ctx, channels)
    stride_w, stride_h = int(opts.strideW), int(opts.strideH)
    dil_w, dil_h = int(opts.dilationWFactor), int(opts.dilationHFactor)
    kh, kw = f.shape[1], f.shape[2]
    oh, pad_h = conv_geometry(opts.padding, x.shape[1], kh, stride_h, dil_h)
    ow, pad_w = conv_geometry(opts.padding, x.shape[2], kw, stride_w, dil_w)
    if (oh, ow) != (y.shape[1], y.shape[2]):
        raise ModelError(f"op {ctx.index}: output shape {y.shape} does not follow from the padding")
    depth_multiplier = 0
    if op_type == OP_CONV:
        if f.shape[0] != channels or f.shape[3] != x.shape[3]:
            raise ctx.refuse("grouped convolution is not supported")
    else:
        depth_multiplier = int(opts.depthMultiplier)
        if f.shape[3] != channels or channels != x.shape[3] * depth_multiplier:
            raise ModelError(
                f"op {ctx.index}: depthwise filter {f.shape} does not match its tensors"
            )
    if f.zero_point != 0:
        raise ctx.refuse("its filter's zero point must be 0")
    multipliers, shifts = channel_multipliers(x.scale, f.scales, y.scale, channels)
    params = struct.pack(f"<{channels}i{channels}i", *multipliers, *shifts)
    if op_type == OP_DEPTHWISE:
        # DepthwiseConvGeneral's requantization (optimized_ops::Quantize): NEON blocks of
        # 8 channels round the final shift's ties up (vrshl), the rest away from zero.
        vector = channels // DEPTHWISE_BLOCK * DEPTHWISE_BLOCK
        params += struct.pack("<Ii", vector, ROUNDING_DOUBLE_TIES_UP)
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


def conv_2d(ctx: OpContext) -> bytes:
    # LiteRT runs it as a GEMM (ruy, or its own GEMV for a single output pixel).
    return _convolution(ctx, OP_CONV, ctx.conv_rounding)


def depthwise_conv_2d(ctx: OpContext) -> bytes:
    # TFLite's own depthwise kernel: the reference rounding but in its NEON blocks.
    return _convolution(ctx, OP_DEPTHWISE, ROUNDING_DOUBLE)


def fully_connected(ctx: OpContext) -> bytes:
    """``optimized_integer_ops::FullyConnected``: a GEMM, rounded like CONV_2D's."""
    ins, outs, opts = ctx.ins, ctx.outs, ctx.options
    if len(ins) not in (2, 3) or len(outs) != 1:
        raise ctx.refuse("needs input, weights, optional bias and one output")
    x = ctx.int8(ins[0], "input")
    f = ctx.typed(ins[1], x.dtype, "weights")
    y = ctx.int8(outs[0], "output")
    if f.data is None or len(f.shape) != 2:
        raise ctx.refuse("its weights must be a constant 2-D matrix")
    if int(opts.weightsFormat) != schema.FullyConnectedOptionsWeightsFormat.DEFAULT:
        raise ctx.refuse("shuffled weights are not supported")
    if f.zero_point != 0:
        raise ctx.refuse("its weights' zero point must be 0")
    channels, depth = f.shape
    rows, rest = divmod(int(np.prod(x.shape, dtype=np.int64)), depth)
    if rest or not y.shape or y.shape[-1] != channels or y.nbytes != rows * channels:
        raise ModelError(
            f"op {ctx.index}: FULLY_CONNECTED shapes {x.shape} x {f.shape} -> {y.shape}"
        )
    _bias(ctx, channels)
    if len(f.scales) > 1:
        # Per-channel: each multiplier from double products, as for convolutions.
        multipliers, shifts = channel_multipliers(x.scale, f.scales, y.scale, channels)
    else:
        # GetQuantizedConvolutionMultipler: input * filter scale in float, then double.
        real = float(np.float32(np.float32(x.scale) * np.float32(f.scale))) / f32(y.scale)
        m, s = quantize_multiplier(real)
        multipliers, shifts = [m] * channels, [s] * channels
    params = struct.pack(f"<{channels}i{channels}i", *multipliers, *shifts)
    return op_record(
        OP_FULLY_CONNECTED,
        ins,
        outs,
        rounding=ctx.conv_rounding,
        act=ctx.fused_activation(y),
        params=ctx.writer.params(params),
    )
