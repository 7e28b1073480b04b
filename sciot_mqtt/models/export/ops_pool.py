"""Encoders of AVERAGE_POOL_2D, MAX_POOL_2D and MEAN (``ops.ENCODERS``)."""

from __future__ import annotations

import math
import struct

import numpy as np

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.export.context import OpContext, shape4
from sciot_mqtt.models.export.format import (
    DTYPE_INT32,
    OP_AVERAGE_POOL,
    OP_MAX_POOL,
    OP_MEAN,
    op_record,
)
from sciot_mqtt.models.export.ops_conv import conv_geometry
from sciot_mqtt.models.export.ops_elementwise import NEON_BLOCK
from sciot_mqtt.models.export.quant import (
    ROUNDING_DOUBLE,
    ROUNDING_DOUBLE_TIES_UP,
    f32,
    quantize_multiplier,
)

__all__ = ["average_pool_2d", "max_pool_2d", "mean"]


def _pool(ctx: OpContext, op_type: int) -> bytes:
    """``optimized_integer_ops::AveragePool`` / ``MaxPool``: on the raw int8 values (LiteRT
    takes the input's and output's quantization to be one), then the activation clamp."""
    ins, outs = ctx.operands(1)
    x = ctx.int8(ins[0], "input")
    y = ctx.int8(outs[0], "output")
    opts = ctx.options
    if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[0] != 1 or x.shape[3] != y.shape[3]:
        raise ctx.refuse("a pool wants 4-D tensors, batch 1, as many channels in as out")
    fw, fh = int(opts.filterWidth), int(opts.filterHeight)
    sw, sh = int(opts.strideW), int(opts.strideH)
    oh, pad_h = conv_geometry(opts.padding, x.shape[1], fh, sh, 1)
    ow, pad_w = conv_geometry(opts.padding, x.shape[2], fw, sw, 1)
    if (oh, ow) != (y.shape[1], y.shape[2]):
        raise ModelError(f"op {ctx.index}: output shape {y.shape} does not follow from the padding")
    if max(sw, sh) > 255:
        raise ctx.refuse("strides above 255 do not fit the blob")
    return op_record(
        op_type,
        ins,
        outs,
        stride=(sw, sh),
        pad=(pad_w, pad_h),
        act=ctx.fused_activation(y),
        params=ctx.writer.params(struct.pack("<2i", fw, fh)),
    )


def average_pool_2d(ctx: OpContext) -> bytes:
    return _pool(ctx, OP_AVERAGE_POOL)


def max_pool_2d(ctx: OpContext) -> bytes:
    return _pool(ctx, OP_MAX_POOL)


def mean(ctx: OpContext) -> bytes:
    """MEAN over any axes. Over H and W of a 4-D tensor with ``keep_dims`` (what Keras'
    ``GlobalAveragePooling2D(keepdims=True)`` converts to) LiteRT runs
    ``optimized_integer_ops::Mean``; anything else ``reference_ops::QuantizedMeanOrSum``."""
    ins, outs = ctx.operands(2)
    x = ctx.int8(ins[0], "input")
    y = ctx.int8(outs[0], "output")
    axes = ctx.constant(ins[1], DTYPE_INT32, "axis").reshape(-1)
    rank = len(x.shape)
    if rank == 0 or rank > 4:
        raise ctx.refuse(f"a {rank}-D input")
    resolved = sorted({int(a) + rank if a < 0 else int(a) for a in axes})
    if any(not 0 <= a < rank for a in resolved):
        raise ctx.refuse(f"axis {axes.tolist()} outside a {rank}-D input")
    dims = shape4(x.shape)
    mask = sum(1 << (a + 4 - rank) for a in resolved)
    kept = [d for k, d in enumerate(dims) if not (mask >> k) & 1]
    n = math.prod(d for k, d in enumerate(dims) if (mask >> k) & 1)
    if y.nbytes != math.prod(kept):
        raise ModelError(f"op {ctx.index}: MEAN of {x.shape} over {resolved} cannot be {y.shape}")
    if bool(ctx.options.keepDims) and rank == 4 and resolved == [1, 2]:
        params = _optimized_mean(x.scale, x.zero_point, y.scale, y.zero_point, n, x.shape[3])
    else:
        params = _reference_mean(x.scale, x.zero_point, y.scale, y.zero_point, n, mask)
    return op_record(OP_MEAN, ins, outs, rounding=ROUNDING_DOUBLE, params=ctx.writer.params(params))


def _optimized_mean(
    in_scale: float, in_zp: int, out_scale: float, out_zp: int, n: int, channels: int
) -> bytes:
    """``optimized_integer_ops::Mean``: the raw sum, a multiplier folding in 1/n, and a bias
    for the zero points, both worked out in float; blocks of 16 channels round like NEON."""
    f = np.float32
    temp = f(f(in_zp) * f(in_scale)) / f(out_scale)
    temp = temp + f(0.5) if temp > 0 else temp - f(0.5)
    bias = out_zp - math.trunc(float(temp))
    real_scale = f(in_scale) / f(f(n) * f(out_scale))
    m, s = quantize_multiplier(float(real_scale))
    vector = channels // NEON_BLOCK["MEAN"] * NEON_BLOCK["MEAN"]
    mask = 0b0110  # H and W of N, H, W, C
    return struct.pack("<I6i", mask, 0, bias, m, s, vector, ROUNDING_DOUBLE_TIES_UP)


def _reference_mean(
    in_scale: float, in_zp: int, out_scale: float, out_zp: int, n: int, mask: int
) -> bytes:
    """``reference_ops::QuantizedMeanOrSum``: the sum less n zero points, times a multiplier
    that folds 1/n in as an integer division (PrepareMeanOrSum, then the kernel's rescale)."""
    m, s = quantize_multiplier(f32(in_scale) / f32(out_scale))
    shift = min(n.bit_length() - 1, 32, 31 + s)
    m = (m << shift) // n
    s -= shift
    return struct.pack("<I6i", mask, -in_zp * n, out_zp, m, s, 0, ROUNDING_DOUBLE)
