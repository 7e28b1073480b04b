"""The sciot model blob's binary layout: record structs, enums, and the writer that places data.

The blob is what ``firmware-bridge/ops`` (``sciot_ops.h``) runs on the host firmware: the
model's tensors, operators with every derived constant the int8 kernels need (padding,
per-channel requantization multipliers, activation bounds, the softmax table) and, for
every split point, the tensors live there. The enums here are ``sciot_ops.h``'s.

Layout (version 2, little-endian, offsets from the start of the blob, sections 16-aligned)::

    header   96 bytes   "SCMB", u16 version, u16 header bytes, u32 total length,
                        u16 tensors, u16 ops, u32 arena bytes, u32 tensor/op/boundary
                        section offsets, sha256[32] of the .tflite, model id char[32]
    tensors  40 bytes each, in subgraph order (so the record index is the manifest index):
                        u8 dtype, u8 ndims, u8 kind (0 unused, 1 activation, 2 constant),
                        u8 0, i32 dims[4], u32 nbytes, u32 location (arena offset of an
                        activation, 0xffffffff for a graph input; blob offset of constant
                        data), f32 scale, i32 zero point, u32 0
    ops      48 bytes each: u8 type, u8 rounding, u8 inputs, u8 outputs,
                        u16 inputs[4], u16 outputs[2], u8 stride w/h, u8 dilation w/h,
                        i16 pad w/h, u16 depth multiplier, u16 0, i32 activation min/max,
                        u32 params offset, u32 params bytes, u32 0
    bounds   u32 offset[N+1] -> u16 count, u16 tensor index[count]

Op params (all little-endian; C = output channels):

- CONV_2D, FULLY_CONNECTED: i32 multiplier[C] then i32 shift[C]
- DEPTHWISE_CONV_2D: the same, then u32 vector channels, i32 vector rounding (the first
  channels round so, the rest with the record's rounding)
- ADD: i32 left shift, multiplier/shift of input 1, input 2 and output, u32 vector count
  (the first elements computed like LiteRT's NEON blocks, see kernels.h)
- MUL: i32 output multiplier, i32 output shift, u32 vector count (inputs broadcast)
- SOFTMAX: f32 table[256] (``table[255 - d] = expf(-input_scale * beta * d)``)
- AVERAGE_POOL_2D, MAX_POOL_2D: i32 filter width, filter height (stride, padding in the record)
- MEAN: u32 reduce mask (bit d: dimension d of the input right-aligned into 4), i32
  accumulator offset, output offset, multiplier, shift, u32 vector outputs, i32 vector
  rounding (the first outputs round so, the rest with the record's rounding)
- RESHAPE: none; CONCATENATION: i32 axis
- PAD, PADV2: i32 before[4], after[4] (input right-aligned into 4), i32 value
- HARD_SWISH: i32 output multiplier (int16), output exponent, "relu-ish" multiplier (int16),
  its exponent
- LOGISTIC, TANH: int8 table[256] indexed by the input's bits as uint8
- QUANTIZE from float32: u32 vector count, then two maps (``tables.QUANTIZE_MAP``) for the
  elements before and from the vector count; from int8: i32 multiplier, shift, vector
  count, vector rounding (the record's rounding is the rest's)
- DEQUANTIZE: u32 vector count, then two f32 tables[256] indexed like LOGISTIC's

Version 2 added every operator after SOFTMAX and changed the params of DEPTHWISE_CONV_2D and
ADD (LiteRT's NEON blocks), so a version-1 reader cannot read it.
"""

from __future__ import annotations

import struct

from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import UnsupportedModelError
from sciot_mqtt.models.export.quant import ROUNDING_DOUBLE

__all__ = [
    "BLOB_MAGIC",
    "BLOB_VERSION",
    "DTYPE_CODES",
    "DTYPE_FLOAT32",
    "DTYPE_INT8",
    "DTYPE_INT32",
    "HEADER",
    "KIND_ACTIVATION",
    "KIND_CONSTANT",
    "KIND_UNUSED",
    "MAX_BOUNDARY_TENSORS",
    "MAX_OP_INPUTS",
    "MAX_OP_OUTPUTS",
    "NOWHERE",
    "NO_TENSOR",
    "OP_ADD",
    "OP_AVERAGE_POOL",
    "OP_CONCATENATION",
    "OP_CONV",
    "OP_DEPTHWISE",
    "OP_DEQUANTIZE",
    "OP_FULLY_CONNECTED",
    "OP_HARD_SWISH",
    "OP_LOGISTIC",
    "OP_MAX_POOL",
    "OP_MEAN",
    "OP_MUL",
    "OP_PAD",
    "OP_PADV2",
    "OP_QUANTIZE",
    "OP_RESHAPE",
    "OP_SOFTMAX",
    "OP_TANH",
    "TENSOR",
    "BlobWriter",
    "align",
    "op_record",
]

BLOB_MAGIC = b"SCMB"
BLOB_VERSION = 2
HEADER = struct.Struct("<4sHHIHHIIII32s32s")
TENSOR = struct.Struct("<BBBB4iIIfiI")
_OP = struct.Struct("<BBBB4H2HBBBBhhHHiiIII")
_ALIGN = 16
NO_TENSOR = 0xFFFF
NOWHERE = 0xFFFFFFFF
MAX_BOUNDARY_TENSORS = 16  # InferRequest.tensors max_length (C: SCIOT_MAX_BOUNDARY_TENSORS)
MAX_OP_INPUTS, MAX_OP_OUTPUTS = 4, 2

# Tensor types: blob code and element size.
DTYPE_INT8, DTYPE_INT32, DTYPE_FLOAT32 = 1, 4, 5
DTYPE_CODES = {
    schema.TensorType.INT8: (DTYPE_INT8, 1),
    schema.TensorType.UINT8: (2, 1),
    schema.TensorType.INT16: (3, 2),
    schema.TensorType.INT32: (DTYPE_INT32, 4),
    schema.TensorType.FLOAT32: (DTYPE_FLOAT32, 4),
}
# Operator types (sciot_ops.h sciot_op_type).
OP_CONV, OP_DEPTHWISE, OP_ADD, OP_SOFTMAX = 1, 2, 3, 4
OP_FULLY_CONNECTED, OP_AVERAGE_POOL, OP_MAX_POOL, OP_MEAN = 5, 6, 7, 8
OP_RESHAPE, OP_CONCATENATION, OP_MUL, OP_PAD, OP_PADV2 = 9, 10, 11, 12, 13
OP_HARD_SWISH, OP_LOGISTIC, OP_TANH, OP_QUANTIZE, OP_DEQUANTIZE = 14, 15, 16, 17, 18
# Tensor kinds.
KIND_UNUSED, KIND_ACTIVATION, KIND_CONSTANT = 0, 1, 2


def align(n: int, to: int = _ALIGN) -> int:
    return (n + to - 1) // to * to


class BlobWriter:
    """The blob being built: sections and constants placed at aligned offsets."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def place(self, data: bytes) -> int:
        """Append ``data`` at the next aligned offset; return that offset."""
        offset = align(len(self.buf))
        self.buf.extend(b"\0" * (offset - len(self.buf)))
        self.buf.extend(data)
        return offset

    def params(self, data: bytes) -> tuple[int, int]:
        """Place an op's parameters; their (offset, bytes) for its record."""
        return self.place(data), len(data)

    def pad_to_alignment(self) -> None:
        self.buf.extend(b"\0" * (align(len(self.buf)) - len(self.buf)))


def op_record(
    op_type: int,
    ins: list[int],
    outs: list[int],
    *,
    rounding: int = ROUNDING_DOUBLE,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    pad: tuple[int, int] = (0, 0),
    depth_multiplier: int = 0,
    act: tuple[int, int] = (-128, 127),
    params: tuple[int, int] = (0, 0),
) -> bytes:
    """One 48-byte op record; ``params`` is (offset, bytes) from ``BlobWriter.params``."""
    if len(ins) > MAX_OP_INPUTS or len(outs) > MAX_OP_OUTPUTS:
        raise UnsupportedModelError("operator with more than 4 inputs or 2 outputs")
    pad_in = [(t if t >= 0 else NO_TENSOR) for t in ins] + [NO_TENSOR] * (4 - len(ins))
    pad_out = list(outs) + [NO_TENSOR] * (2 - len(outs))
    return _OP.pack(
        op_type, rounding, len(ins), len(outs), *pad_in, *pad_out, *stride, *dilation,
        *pad, depth_multiplier, 0, *act, *params, 0,
    )  # fmt: skip
