"""Operator records of the blob: one encoder per builtin operator the C kernels implement.

An encoder checks that the operator is one its C kernel runs, derives the kernel's
constants (placing its parameters in the blob) and returns the op's 48-byte record.
Supporting a new operator is one encoder (in the module of its family: ``ops_conv``,
``ops_elementwise``, ``ops_pool``, ``ops_shape``) and its row in ``ENCODERS``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import UnsupportedModelError
from sciot_mqtt.models.export.context import OpContext, OpEncoder
from sciot_mqtt.models.export.ops_conv import (
    conv_2d,
    conv_geometry,
    depthwise_conv_2d,
    fully_connected,
)
from sciot_mqtt.models.export.ops_elementwise import (
    add,
    dequantize,
    hard_swish,
    logistic,
    mul,
    quantize,
    softmax,
    tanh,
)
from sciot_mqtt.models.export.ops_pool import average_pool_2d, max_pool_2d, mean
from sciot_mqtt.models.export.ops_shape import concatenation, pad, padv2, reshape
from sciot_mqtt.models.graph import builtin_op_name

__all__ = [
    "ENCODERS",
    "OpContext",
    "OpEncoder",
    "conv_geometry",
    "encode_ops",
    "unsupported_summary",
]

_OP = schema.BuiltinOperator

#: Builtin operator -> its encoder. The order is the one messages list them in.
ENCODERS: dict[int, OpEncoder] = {
    _OP.CONV_2D: conv_2d,
    _OP.DEPTHWISE_CONV_2D: depthwise_conv_2d,
    _OP.FULLY_CONNECTED: fully_connected,
    _OP.ADD: add,
    _OP.MUL: mul,
    _OP.AVERAGE_POOL_2D: average_pool_2d,
    _OP.MAX_POOL_2D: max_pool_2d,
    _OP.MEAN: mean,
    _OP.RESHAPE: reshape,
    _OP.CONCATENATION: concatenation,
    _OP.PAD: pad,
    _OP.PADV2: padv2,
    _OP.HARD_SWISH: hard_swish,
    _OP.LOGISTIC: logistic,
    _OP.TANH: tanh,
    _OP.SOFTMAX: softmax,
    _OP.QUANTIZE: quantize,
    _OP.DEQUANTIZE: dequantize,
}


def encode_ops(codes: Sequence[int], contexts: Sequence[OpContext]) -> list[bytes]:
    """Every op's record, in order; or, if any op cannot run in C, one
    ``UnsupportedModelError`` that names all of them (``unsupported_summary``)."""
    records: list[bytes] = []
    unknown: dict[str, list[int]] = defaultdict(list)
    refused: list[str] = []
    for code, ctx in zip(codes, contexts, strict=True):
        encoder = ENCODERS.get(code)
        if encoder is None:
            unknown[ctx.name].append(ctx.index)
            continue
        try:
            records.append(encoder(ctx))
        except UnsupportedModelError as exc:
            refused.append(str(exc))
    if unknown or refused:
        raise UnsupportedModelError(unsupported_summary(len(contexts), unknown, refused))
    return records


def unsupported_summary(num_ops: int, unknown: dict[str, list[int]], refused: list[str]) -> str:
    """The refusal: each missing operator with its count and op indices, then each op whose
    operator is implemented but not in the form this one takes, then what is implemented."""
    lines = []
    if unknown:
        count = sum(len(v) for v in unknown.values())
        lines.append(f"sciot_ops does not implement {count} of the model's {num_ops} operators:")
        for name, indices in unknown.items():
            where = ", ".join(str(i) for i in indices)
            lines.append(f"  {name} x{len(indices)} (op{'s' if len(indices) > 1 else ''} {where})")
    if refused:
        plural = "s" if len(refused) > 1 else ""
        lines.append(f"{len(refused)} operator{plural} cannot run as given:")
        lines.extend(f"  {why}" for why in refused)
    names = [builtin_op_name(c) for c in ENCODERS]
    lines.append(f"sciot_ops implements {', '.join(names[:-1])} and {names[-1]}")
    return "\n".join(lines)
