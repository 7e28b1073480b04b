"""Encoders of the elementwise and activation ops (``ops.ENCODERS``): ADD, MUL, HARD_SWISH,
LOGISTIC, TANH, QUANTIZE, DEQUANTIZE and SOFTMAX."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from sciot_mqtt.models.export.context import OpContext
from sciot_mqtt.models.export.format import (
    DTYPE_FLOAT32,
    OP_ADD,
    OP_DEQUANTIZE,
    OP_HARD_SWISH,
    OP_LOGISTIC,
    OP_MUL,
    OP_QUANTIZE,
    OP_SOFTMAX,
    OP_TANH,
    op_record,
)
from sciot_mqtt.models.export.quant import (
    ROUNDING_DOUBLE,
    ROUNDING_DOUBLE_TIES_UP,
    f32,
    libm,
    quantize_multiplier,
    softmax_table,
)
from sciot_mqtt.models.export.source import SourceTensor
from sciot_mqtt.models.export.tables import (
    dequantize_tables,
    hard_swish_params,
    lut_int8,
    quantize_maps,
)

__all__ = [
    "NEON_BLOCK",
    "add",
    "dequantize",
    "hard_swish",
    "logistic",
    "mul",
    "quantize",
    "softmax",
    "tanh",
]

#: Elements LiteRT's NEON code (SSE-emulated on x86-64) handles per block, by kernel; the
#: remaining tail runs its scalar code, which can round differently.
NEON_BLOCK = {
    "ADD": 16,
    "MUL": 16,
    "QUANTIZE": 8,
    "DEQUANTIZE": 8,
    "REQUANTIZE": 16,
    "MEAN": 16,
}


def _vector_count(n: int, kernel: str) -> int:
    return n // NEON_BLOCK[kernel] * NEON_BLOCK[kernel]


def _broadcasts(ctx: OpContext, a: Sequence[int], b: Sequence[int], y: Sequence[int]) -> None:
    """``a`` and ``b`` broadcast (numpy rules, at most 4-D) to exactly ``y``."""
    try:
        shape = np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError as exc:
        raise ctx.refuse(f"shapes {tuple(a)} and {tuple(b)} do not broadcast") from exc
    if max(len(a), len(b), len(y)) > 4 or tuple(int(d) for d in shape) != tuple(y):
        raise ctx.refuse(f"shapes {tuple(a)} and {tuple(b)} do not broadcast to {tuple(y)}")


def _binary(ctx: OpContext) -> tuple[SourceTensor, SourceTensor, SourceTensor]:
    ins, outs = ctx.operands(2)
    a = ctx.int8(ins[0], "input")
    b = ctx.int8(ins[1], "input")
    y = ctx.int8(outs[0], "output")
    _broadcasts(ctx, a.shape, b.shape, y.shape)
    return a, b, y


def add(ctx: OpContext) -> bytes:
    """``optimized_integer_ops::Add`` of same-shape inputs: ``AddElementwiseInt8``, whose
    NEON blocks scale the inputs differently from its scalar tail. (Broadcasting runs other
    NEON code, ``AddScalarBroadcast``, in blocks that depend on the shapes; not supported.)"""
    a, b, y = _binary(ctx)
    if a.shape != y.shape or b.shape != y.shape:
        raise ctx.refuse("broadcasting ADD is not supported")
    # add.cc Prepare for int8: the max is taken in float, the ratios in double.
    twice_max = float(np.float32(2) * max(np.float32(a.scale), np.float32(b.scale)))
    left_shift = 20
    m1, s1 = quantize_multiplier(f32(a.scale) / twice_max)
    m2, s2 = quantize_multiplier(f32(b.scale) / twice_max)
    out_real = twice_max / float(np.float32((1 << left_shift) * np.float32(y.scale)))
    mo, so = quantize_multiplier(out_real)
    count = _vector_count(y.nbytes, "ADD")
    params = struct.pack("<7iI", left_shift, m1, s1, m2, s2, mo, so, count)
    return op_record(
        OP_ADD,
        ctx.ins,
        ctx.outs,
        rounding=ROUNDING_DOUBLE,  # TFLite's own kernel, the reference rounding
        act=ctx.fused_activation(y),
        params=ctx.writer.params(params),
    )


def mul(ctx: OpContext) -> bytes:
    """``optimized_integer_ops::Mul``: the same rounding in its NEON blocks and its scalar
    tail; the blocks saturate the requantized product to int16 before adding the zero point,
    which only matters for products hundreds of times beyond the output's range. Elementwise,
    the blocks are the first whole sixteens; broadcasting, LiteRT's blocks depend on how it
    folds the shapes, so there every element is computed like the tail."""
    a, b, y = _binary(ctx)
    # mul.cc Prepare: `double real_multiplier = s1 * s2 / s_out`, computed in float.
    real = float(np.float32(np.float32(np.float32(a.scale) * np.float32(b.scale)) / f32(y.scale)))
    m, s = quantize_multiplier(real)
    same_shape = a.shape == y.shape and b.shape == y.shape
    count = _vector_count(y.nbytes, "MUL") if same_shape else 0
    return op_record(
        OP_MUL,
        ctx.ins,
        ctx.outs,
        rounding=ROUNDING_DOUBLE,  # scalar and NEON paths both round ties away from zero
        act=ctx.fused_activation(y),
        params=ctx.writer.params(struct.pack("<2iI", m, s, count)),
    )


def _unary_int8(ctx: OpContext) -> tuple[SourceTensor, SourceTensor]:
    ins, outs = ctx.operands(1)
    x = ctx.int8(ins[0], "input")
    y = ctx.int8(outs[0], "output")
    if x.nbytes != y.nbytes:
        raise ctx.refuse(f"input {x.shape} and output {y.shape} differ in size")
    return x, y


def hard_swish(ctx: OpContext) -> bytes:
    """``reference_ops::HardSwish`` (LiteRT's NEON version is for real ARM only)."""
    x, y = _unary_int8(ctx)
    out_m, out_exp, rel_m, rel_exp = hard_swish_params(x.scale, y.scale)
    if out_exp > 0:
        raise ctx.refuse("its output scale is below input scale / 128 (LiteRT refuses it too)")
    return op_record(
        OP_HARD_SWISH,
        ctx.ins,
        ctx.outs,
        params=ctx.writer.params(struct.pack("<4i", out_m, out_exp, rel_m, rel_exp)),
    )


def _lookup(ctx: OpContext, op_type: int, function: str) -> bytes:
    x, y = _unary_int8(ctx)
    f = np.float32
    if function == "expf":
        expf = libm("expf")

        def transform(v: np.float32) -> np.float32:
            return f(f(1) / (f(1) + f(expf(float(-v)))))  # 1.0f / (1.0f + std::exp(-v))

    else:
        tanhf = libm("tanhf")

        def transform(v: np.float32) -> np.float32:
            return f(tanhf(float(v)))

    table = lut_int8(x.scale, x.zero_point, y.scale, y.zero_point, transform)
    return op_record(op_type, ctx.ins, ctx.outs, params=ctx.writer.params(table))


def logistic(ctx: OpContext) -> bytes:
    """LiteRT's int8 LOGISTIC: a lookup table filled at ``Prepare`` (``LUTPopulate``)."""
    return _lookup(ctx, OP_LOGISTIC, "expf")


def tanh(ctx: OpContext) -> bytes:
    """LiteRT's int8 TANH: a lookup table filled at ``Prepare`` (``LUTPopulate``)."""
    return _lookup(ctx, OP_TANH, "tanhf")


def quantize(ctx: OpContext) -> bytes:
    """float32 -> int8 (``AffineQuantize``) or int8 -> int8 (``Requantize``)."""
    ins, outs = ctx.operands(1)
    y = ctx.int8(outs[0], "output")
    source = ctx.tensors[ins[0]]
    if source.dtype == DTYPE_FLOAT32:
        if source.nbytes != 4 * y.nbytes:
            raise ctx.refuse(f"input {source.shape} and output {y.shape} differ in size")
        vector_map, tail_map = quantize_maps(y.scale, y.zero_point)
        count = _vector_count(y.nbytes, "QUANTIZE")
        params = struct.pack("<I", count) + vector_map + tail_map
        return op_record(OP_QUANTIZE, ins, outs, params=ctx.writer.params(params))
    x = ctx.int8(ins[0], "input")
    if x.nbytes != y.nbytes:
        raise ctx.refuse(f"input {x.shape} and output {y.shape} differ in size")
    # quantize.cc Prepare: the ratio of the float scales in double.
    m, s = quantize_multiplier(f32(x.scale) / f32(y.scale))
    count = _vector_count(y.nbytes, "REQUANTIZE")
    params = struct.pack("<4i", m, s, count, ROUNDING_DOUBLE_TIES_UP)
    return op_record(
        OP_QUANTIZE, ins, outs, rounding=ROUNDING_DOUBLE, params=ctx.writer.params(params)
    )


def dequantize(ctx: OpContext) -> bytes:
    """int8 -> float32 (``optimized_ops::Dequantize``) as two 256-entry tables."""
    ins, outs = ctx.operands(1)
    x = ctx.int8(ins[0], "input")
    y = ctx.typed(outs[0], DTYPE_FLOAT32, "output")
    if y.nbytes != 4 * x.nbytes:
        raise ctx.refuse(f"input {x.shape} and output {y.shape} differ in size")
    vector_table, tail_table = dequantize_tables(x.scale, x.zero_point)
    count = _vector_count(x.nbytes, "DEQUANTIZE")
    params = struct.pack("<I", count) + vector_table + tail_table
    return op_record(OP_DEQUANTIZE, ins, outs, params=ctx.writer.params(params))


def softmax(ctx: OpContext) -> bytes:
    x, y = _unary_int8(ctx)
    if x.shape != y.shape:
        raise ctx.refuse("input and output shapes differ")
    table = softmax_table(x.scale, float(ctx.options.beta))
    params = table.astype("<f4").tobytes()
    return op_record(OP_SOFTMAX, ctx.ins, ctx.outs, params=ctx.writer.params(params))
