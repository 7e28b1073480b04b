"""Encoders of RESHAPE, CONCATENATION, PAD and PADV2 (``ops.ENCODERS``): ops that only move
bytes, so bit-exactness is a matter of moving the right ones."""

from __future__ import annotations

import struct

from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.export.context import OpContext, shape4
from sciot_mqtt.models.export.format import (
    DTYPE_INT8,
    DTYPE_INT32,
    OP_CONCATENATION,
    OP_PAD,
    OP_PADV2,
    OP_RESHAPE,
    op_record,
)

__all__ = ["concatenation", "pad", "padv2", "reshape"]


def reshape(ctx: OpContext) -> bytes:
    """The same bytes under another shape (the new shape comes from the output tensor)."""
    if len(ctx.ins) not in (1, 2) or len(ctx.outs) != 1:
        raise ctx.refuse("needs the data, an optional shape and one output")
    x = ctx.tensors[ctx.ins[0]]
    y = ctx.typed(ctx.outs[0], x.dtype, "output")
    if len(ctx.ins) == 2 and ctx.ins[1] >= 0:
        ctx.constant(ctx.ins[1], DTYPE_INT32, "new shape")
    if x.nbytes != y.nbytes:
        raise ctx.refuse(f"input {x.shape} and output {y.shape} differ in size")
    return op_record(OP_RESHAPE, ctx.ins, ctx.outs)


def concatenation(ctx: OpContext) -> bytes:
    """int8 inputs of the output's scale and zero point (LiteRT requires it), no fused
    activation (likewise), at most four of them (the blob's operand limit)."""
    outs = ctx.outs
    if len(outs) != 1 or not 1 <= len(ctx.ins) <= 4:
        raise ctx.refuse(f"{len(ctx.ins)} inputs; the blob holds at most 4")
    y = ctx.int8(outs[0], "output")
    rank = len(y.shape)
    axis = int(ctx.options.axis)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ctx.refuse(f"axis {ctx.options.axis} outside a {rank}-D output")
    if int(ctx.options.fusedActivationFunction) != schema.ActivationFunctionType.NONE:
        raise ctx.refuse("a fused activation")
    for k in ctx.ins:
        x = ctx.int8(k, "input")
        if len(x.shape) != rank or (x.scale, x.zero_point) != (y.scale, y.zero_point):
            raise ctx.refuse("inputs must have the output's rank, scale and zero point")
    return op_record(
        OP_CONCATENATION, ctx.ins, outs, params=ctx.writer.params(struct.pack("<i", axis))
    )


def _pad(ctx: OpContext, op_type: int, inputs: int) -> bytes:
    ins, outs = ctx.operands(inputs)
    x = ctx.int8(ins[0], "input")
    y = ctx.int8(outs[0], "output")
    paddings = ctx.constant(ins[1], DTYPE_INT32, "paddings")
    rank = len(x.shape)
    if paddings.shape != (rank, 2) or rank > 4 or (paddings < 0).any():
        raise ctx.refuse(f"paddings {paddings.tolist()} for a {rank}-D input")
    lead = [[0, 0]] * (4 - rank)
    before, after = zip(*(lead + paddings.tolist()), strict=True)
    if tuple(b + d + a for b, d, a in zip(before, shape4(x.shape), after, strict=True)) != shape4(
        y.shape
    ):
        raise ctx.refuse(f"padding {x.shape} by {paddings.tolist()} does not give {y.shape}")
    if inputs == 3:
        # PADV2's constant, which LiteRT requires in the output's quantization.
        value = int(ctx.constant(ins[2], DTYPE_INT8, "constant value").reshape(-1)[0])
    else:
        value = y.zero_point  # the quantized 0
    params = struct.pack("<9i", *before, *after, value)
    return op_record(op_type, ins, outs, params=ctx.writer.params(params))


def pad(ctx: OpContext) -> bytes:
    return _pad(ctx, OP_PAD, 2)


def padv2(ctx: OpContext) -> bytes:
    return _pad(ctx, OP_PADV2, 3)
