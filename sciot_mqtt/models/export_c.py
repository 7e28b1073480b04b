"""Export a prepared model for the C firmware: a "sciot model blob" and C arrays.

The blob is what ``firmware-bridge/ops`` (``sciot_ops.h``) runs on the host firmware: the
model's tensors, operators with every derived constant the int8 kernels need (padding,
per-channel requantization multipliers, activation bounds, the softmax table) and, for
every split point, the tensors live there. Everything that needs floating point or libm is
computed here, the way LiteRT computes it at ``Prepare`` time, so the C kernels stay
integer-only (softmax keeps a few float multiply-adds, as LiteRT's does).

Layout (version 1, little-endian, offsets from the start of the blob, sections 16-aligned)::

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

Op params: CONV_2D and DEPTHWISE_CONV_2D: i32 multiplier[C] then i32 shift[C];
ADD: i32 left shift, multiplier/shift of input 1, input 2 and output;
SOFTMAX: f32 table[256] (``table[255 - d] = expf(-input_scale * beta * d)``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import ModelError, UnsupportedModelError
from sciot_mqtt.models.package import ModelPackage

__all__ = [
    "BLOB_MAGIC",
    "BLOB_VERSION",
    "ROUNDINGS",
    "ROUNDING_DOUBLE",
    "ROUNDING_DOUBLE_TIES_UP",
    "ROUNDING_SINGLE",
    "ExportedFiles",
    "c_identifier",
    "detect_conv_rounding",
    "export_blob",
    "export_c",
    "requantize",
]

BLOB_MAGIC = b"SCMB"
BLOB_VERSION = 1
_HEADER = struct.Struct("<4sHHIHHIIII32s32s")
_TENSOR = struct.Struct("<BBBB4iIIfiI")
_OP = struct.Struct("<BBBB4H2HBBBBhhHHiiIII")
_ALIGN = 16
_NO_TENSOR = 0xFFFF
_NOWHERE = 0xFFFFFFFF
_MAX_BOUNDARY_TENSORS = 16  # InferRequest.tensors max_length (C: SCIOT_MAX_BOUNDARY_TENSORS)

# sciot_ops.h enums
_DTYPES = {
    schema.TensorType.INT8: (1, 1),
    schema.TensorType.UINT8: (2, 1),
    schema.TensorType.INT16: (3, 2),
    schema.TensorType.INT32: (4, 4),
    schema.TensorType.FLOAT32: (5, 4),
}
_OP_CONV, _OP_DEPTHWISE, _OP_ADD, _OP_SOFTMAX = 1, 2, 3, 4
_KIND_ACTIVATION, _KIND_CONSTANT = 1, 2

#: Requantization rounding of an op: TFLite's reference ``MultiplyByQuantizedMultiplier``
#: (rounding doubling high multiply, then rounding shift: two roundings) ...
ROUNDING_DOUBLE = 0
#: ... ruy's portable single rounding of the 64-bit product ...
ROUNDING_SINGLE = 1
#: ... or what ruy's x86 AVX2 GEMM kernels compute: the same high multiply, then a shift
#: rounding ties toward +infinity.
ROUNDING_DOUBLE_TIES_UP = 2
#: Names for the command line.
ROUNDINGS = {
    "double": ROUNDING_DOUBLE,
    "single": ROUNDING_SINGLE,
    "ties-up": ROUNDING_DOUBLE_TIES_UP,
}
# DEPTHWISE_CONV_2D and ADD run TFLite's own kernels, which keep the reference rounding.
# CONV_2D runs as a ruy GEMM whose rounding depends on the CPU ruy picks (AVX2: ties up;
# ARM NEON and some AVX-512 builds: single), so export_blob measures it; this is the
# fallback when the model has no convolution to measure it on.
_ROUNDING = {
    _OP_CONV: ROUNDING_DOUBLE_TIES_UP,
    _OP_DEPTHWISE: ROUNDING_DOUBLE,
    _OP_ADD: ROUNDING_DOUBLE,
}

# 16-aligned so that the blob's 32-bit fields and the segments' flatbuffers sit aligned
# (TFLite Micro wants its model buffer aligned).
_ALIGNED16 = """#ifndef SCIOT_ALIGNED16
#if defined(__GNUC__) || defined(__clang__)
#define SCIOT_ALIGNED16 __attribute__((aligned(16)))
#else
#define SCIOT_ALIGNED16
#endif
#endif
"""

_SEGMENT_TYPE = """#ifndef SCIOT_SEGMENT_DEFINED
#define SCIOT_SEGMENT_DEFINED
/* One .tflite per operator [i, i+1), for esp-tflite-micro. Its inputs and outputs are the
 * op's live tensors, named by manifest tensor index in the segment's own I/O order (the
 * indices sciot_ops.h's boundary queries and the wire use). */
typedef struct {
    const uint8_t *tflite;
    size_t len;
    uint8_t num_inputs, num_outputs;
    uint16_t inputs[4];
    uint16_t outputs[2];
} sciot_segment;
#endif
"""

_GENERATED = (
    "Generated by `sciot-mqtt models export-c` (sciot_mqtt/models/export_c.py); do not edit."
)


def _align(n: int, to: int = _ALIGN) -> int:
    return (n + to - 1) // to * to


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``real ~= m * 2^(shift - 31)``, m in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    # std::round: half away from zero; q * 2^31 is exact in a double.
    q_fixed = math.floor(abs(q) * (1 << 31) + 0.5) * (1 if q >= 0 else -1)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return q_fixed, shift


def _f32(x: Any) -> float:
    return float(np.float32(x))


def _libm_expf() -> Any:
    # LiteRT fills its softmax table with the C library's expf, which need not agree to
    # the last bit with numpy's own float32 exp: ask the same libm.
    name = ctypes.util.find_library("m") or "libm.so.6"
    expf = ctypes.CDLL(name).expf
    expf.restype = ctypes.c_float
    expf.argtypes = [ctypes.c_float]
    return expf


def softmax_table(input_scale: float, beta: float) -> np.ndarray:
    """``optimized_ops::PopulateSoftmaxLookupTable`` in float32."""
    expf = _libm_expf()
    scale = np.float32(-np.float32(input_scale) * np.float32(beta))
    table = np.zeros(256, dtype=np.float32)
    for val in range(256):
        table[255 - val] = expf(float(np.float32(scale * np.float32(val))))
    return table


def _out_size(padding: int, size: int, filt: int, stride: int, dilation: int) -> int:
    eff = (filt - 1) * dilation + 1
    if padding == schema.Padding.SAME:
        return (size + stride - 1) // stride
    return (size + stride - eff) // stride


def _pad(stride: int, dilation: int, size: int, filt: int, out: int) -> int:
    """TFLite's ``ComputePaddingWithOffset``: the leading (top/left) padding."""
    eff = (filt - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2


def _activation_range(act: int, scale: float, zero_point: int) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized`` for an int8 output."""
    lo, hi = -128, 127

    def q(x: float) -> int:
        # TfLiteRound(x / scale): the quotient in float, std::round (half away from zero)
        # done exactly in a double.
        v = float(np.float32(np.float32(x) / np.float32(scale)))
        return zero_point + int(math.copysign(math.floor(abs(v) + 0.5), v))

    if act == schema.ActivationFunctionType.NONE:
        return lo, hi
    if act == schema.ActivationFunctionType.RELU:
        return max(lo, q(0.0)), hi
    if act == schema.ActivationFunctionType.RELU6:
        return max(lo, q(0.0)), min(hi, q(6.0))
    if act == schema.ActivationFunctionType.RELU_N1_TO_1:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise UnsupportedModelError(f"fused activation {act} is not supported")


@dataclass
class _Tensor:
    dtype: int
    itemsize: int
    shape: tuple[int, ...]
    scale: float
    scales: list[float]
    zero_point: int
    data: bytes | None


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def place(self, data: bytes) -> int:
        offset = _align(len(self.buf))
        self.buf.extend(b"\0" * (offset - len(self.buf)))
        self.buf.extend(data)
        return offset


def _read_model(package: ModelPackage) -> Any:
    raw = package.model_path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    if hashlib.sha256(raw).hexdigest() != package.sha256:
        raise ModelError(f"{package.model_path} does not match the manifest; re-prepare it")
    for buf in model.buffers or []:
        if getattr(buf, "offset", 0) and buf.offset > 1:
            buf.data = np.frombuffer(raw, np.uint8, count=buf.size, offset=buf.offset).copy()
    return model


def _tensors(model: Any) -> list[_Tensor]:
    sg = model.subgraphs[0]
    out = []
    for i, t in enumerate(sg.tensors):
        if int(t.type) not in _DTYPES:
            raise UnsupportedModelError(
                f"tensor {i} has TFLite type {t.type}; the blob holds int8, uint8, int16, "
                "int32 and float32 tensors"
            )
        code, itemsize = _DTYPES[int(t.type)]
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
            _Tensor(
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


def _nbytes(t: _Tensor) -> int:
    return int(np.prod(t.shape, dtype=np.int64)) * t.itemsize if t.shape else t.itemsize


def _plan_arena(
    num_ops: int,
    op_inputs: Sequence[Sequence[int]],
    op_outputs: Sequence[Sequence[int]],
    graph_outputs: Sequence[int],
    sizes: dict[int, int],
) -> tuple[dict[int, int], int]:
    """Static offsets for every op result: two results share bytes only if never both live.

    A run of any range [a, b) reads its inputs from the caller and writes the tensors live
    at b to the caller, so this one plan (made for the whole graph) serves every range.
    """
    produced: dict[int, int] = {}
    for i, outs in enumerate(op_outputs):
        for t in outs:
            produced.setdefault(t, i)
    last: dict[int, int] = {t: p for t, p in produced.items()}
    for i, ins in enumerate(op_inputs):
        for t in ins:
            if t in produced:
                last[t] = max(last[t], i)
    for t in graph_outputs:
        if t in produced:
            last[t] = num_ops
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    offsets: dict[int, int] = {}
    for t in sorted(produced, key=lambda t: (-sizes[t], produced[t], t)):
        size, first, end = _align(sizes[t]), produced[t], last[t]
        clashes = sorted((o, s) for o, s, f, e in placed if not (e < first or end < f))
        offset = 0
        for o, s in clashes:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, end))
        offsets[t] = offset
    arena = max((o + s for o, s, _, _ in placed), default=0)
    return offsets, arena


def export_blob(package: ModelPackage, conv_rounding: int | None = None) -> bytes:
    """The sciot model blob of a prepared int8 package.

    ``conv_rounding`` (a ``ROUNDING_*``) defaults to what ``detect_conv_rounding`` measures
    LiteRT doing on this machine; the blob is deterministic for a given value.
    """
    model = _read_model(package)
    sg = model.subgraphs[0]
    tensors = _tensors(model)
    if conv_rounding is None:
        conv_rounding = detect_conv_rounding(package)[0]
    if conv_rounding not in ROUNDINGS.values():
        raise ValueError(f"unknown rounding {conv_rounding}")
    if len(tensors) >= _NO_TENSOR:
        raise UnsupportedModelError(f"{len(tensors)} tensors; the blob indexes at most 65534")
    ops = list(sg.operators or [])
    if len(ops) != package.num_ops:
        raise ModelError("model and manifest disagree on the number of operators")
    codes = model.operatorCodes
    w = _Writer()
    w.buf.extend(b"\0" * _HEADER.size)

    constant_at: dict[int, int] = {}
    for i, t in enumerate(tensors):
        if t.data is not None:
            if len(t.data) != _nbytes(t):
                raise ModelError(f"tensor {i}: {len(t.data)} bytes of data for shape {t.shape}")
            constant_at[i] = w.place(t.data)

    op_records = []
    op_inputs: list[list[int]] = []
    op_outputs: list[list[int]] = []
    for i, op in enumerate(ops):
        oc = codes[op.opcodeIndex]
        name = schema.BuiltinOperator
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        ins = [int(x) for x in op.inputs]
        outs = [int(x) for x in op.outputs]
        op_inputs.append([t for t in ins if t >= 0 and t not in constant_at])
        op_outputs.append(outs)
        opts = op.builtinOptions
        if code == name.CONV_2D:
            record = _conv(i, _OP_CONV, ins, outs, opts, tensors, w, conv_rounding)
        elif code == name.DEPTHWISE_CONV_2D:
            record = _conv(i, _OP_DEPTHWISE, ins, outs, opts, tensors, w, _ROUNDING[_OP_DEPTHWISE])
        elif code == name.ADD:
            record = _add(i, ins, outs, opts, tensors, w)
        elif code == name.SOFTMAX:
            record = _softmax(i, ins, outs, opts, tensors, w)
        else:
            raise UnsupportedModelError(
                f"op {i} is {package.ops[i].op}; sciot_ops implements CONV_2D, "
                "DEPTHWISE_CONV_2D, ADD and SOFTMAX"
            )
        op_records.append(record)

    sizes = {t: _nbytes(tensors[t]) for outs in op_outputs for t in outs}
    offsets, arena = _plan_arena(
        len(ops), op_inputs, op_outputs, [int(t) for t in sg.outputs], sizes
    )

    tensor_table = bytearray()
    for i, t in enumerate(tensors):
        dims = list(t.shape) + [0] * (4 - len(t.shape))
        if i in constant_at:
            kind, where = _KIND_CONSTANT, constant_at[i]
        elif i in offsets:
            kind, where = _KIND_ACTIVATION, offsets[i]
        elif i in [int(x) for x in sg.inputs]:
            kind, where = _KIND_ACTIVATION, _NOWHERE
        else:
            kind, where = 0, _NOWHERE
        tensor_table += _TENSOR.pack(
            t.dtype, len(t.shape), kind, 0, *dims, _nbytes(t), where, t.scale, t.zero_point, 0
        )
    off_tensors = w.place(bytes(tensor_table))
    off_ops = w.place(b"".join(op_records))

    lists = []
    for b in package.boundaries:
        idx = [spec.index for spec in b.tensors]
        if len(idx) > _MAX_BOUNDARY_TENSORS:
            raise UnsupportedModelError(
                f"boundary {b.index} has {len(idx)} live tensors; a split point carries at "
                f"most {_MAX_BOUNDARY_TENSORS} (topics.md)"
            )
        for spec in b.tensors:
            if _nbytes(tensors[spec.index]) != spec.nbytes:
                raise ModelError(f"boundary {b.index}: tensor {spec.index} size mismatch")
        lists.append(struct.pack(f"<H{len(idx)}H", len(idx), *idx))
    table_at = w.place(b"\0" * 4 * len(lists))
    for k, data in enumerate(lists):
        struct.pack_into("<I", w.buf, table_at + 4 * k, w.place(data))
    w.buf.extend(b"\0" * (_align(len(w.buf)) - len(w.buf)))

    model_id = package.model_id.encode()[:31]
    _HEADER.pack_into(
        w.buf,
        0,
        BLOB_MAGIC,
        BLOB_VERSION,
        _HEADER.size,
        len(w.buf),
        len(tensors),
        len(ops),
        arena,
        off_tensors,
        off_ops,
        table_at,
        bytes.fromhex(package.sha256),
        model_id.ljust(32, b"\0"),
    )
    return bytes(w.buf)


def _op_record(
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
    if len(ins) > 4 or len(outs) > 2:
        raise UnsupportedModelError("operator with more than 4 inputs or 2 outputs")
    pad_in = [(t if t >= 0 else _NO_TENSOR) for t in ins] + [_NO_TENSOR] * (4 - len(ins))
    pad_out = list(outs) + [_NO_TENSOR] * (2 - len(outs))
    return _OP.pack(
        op_type, rounding, len(ins), len(outs), *pad_in, *pad_out, *stride, *dilation,
        *pad, depth_multiplier, 0, *act, *params, 0,
    )  # fmt: skip


def _int8(tensors: list[_Tensor], i: int, what: str, op: int) -> _Tensor:
    t = tensors[i]
    if t.dtype != 1:
        raise UnsupportedModelError(f"op {op}: {what} tensor {i} is not int8")
    return t


def _conv(
    i: int, op_type: int, ins: list[int], outs: list[int], opts: Any, tensors: list[_Tensor],
    w: _Writer, rounding: int,
) -> bytes:  # fmt: skip
    if len(ins) < 2 or len(outs) != 1:
        raise UnsupportedModelError(f"op {i}: convolution needs input, filter and one output")
    x = _int8(tensors, ins[0], "input", i)
    f = _int8(tensors, ins[1], "filter", i)
    y = _int8(tensors, outs[0], "output", i)
    bias = tensors[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None
    if f.data is None or (bias is not None and (bias.data is None or bias.dtype != 4)):
        raise UnsupportedModelError(f"op {i}: filter and int32 bias must be constants")
    if len(x.shape) != 4 or len(f.shape) != 4 or len(y.shape) != 4 or x.shape[0] != 1:
        raise UnsupportedModelError(f"op {i}: convolution wants 4-D tensors, batch 1")
    channels = y.shape[3]
    stride_w, stride_h = int(opts.strideW), int(opts.strideH)
    dil_w, dil_h = int(opts.dilationWFactor), int(opts.dilationHFactor)
    kh, kw = f.shape[1], f.shape[2]
    oh = _out_size(opts.padding, x.shape[1], kh, stride_h, dil_h)
    ow = _out_size(opts.padding, x.shape[2], kw, stride_w, dil_w)
    if (oh, ow) != (y.shape[1], y.shape[2]):
        raise ModelError(f"op {i}: output shape {y.shape} does not follow from the padding")
    depth_multiplier = 0
    if op_type == _OP_CONV:
        if f.shape[0] != channels or f.shape[3] != x.shape[3]:
            raise UnsupportedModelError(f"op {i}: grouped convolution is not supported")
    else:
        depth_multiplier = int(opts.depthMultiplier)
        if f.shape[3] != channels or channels != x.shape[3] * depth_multiplier:
            raise ModelError(f"op {i}: depthwise filter {f.shape} does not match its tensors")
    if x.zero_point is None or y.scale == 0.0 or x.scale == 0.0:
        raise UnsupportedModelError(f"op {i}: input and output must be per-tensor quantized")
    if any(z != 0 for z in [f.zero_point]):
        raise UnsupportedModelError(f"op {i}: filter zero point must be 0")
    multipliers, shifts = _channel_multipliers(x, f, y)
    params = struct.pack(f"<{channels}i{channels}i", *multipliers, *shifts)
    return _op_record(
        op_type,
        ins,
        outs,
        rounding=rounding,
        stride=(stride_w, stride_h),
        dilation=(dil_w, dil_h),
        pad=(
            _pad(stride_w, dil_w, x.shape[2], kw, ow),
            _pad(stride_h, dil_h, x.shape[1], kh, oh),
        ),
        depth_multiplier=depth_multiplier,
        act=_activation_range(int(opts.fusedActivationFunction), y.scale, y.zero_point),
        params=(w.place(params), len(params)),
    )


def _channel_multipliers(x: _Tensor, f: _Tensor, y: _Tensor) -> tuple[list[int], list[int]]:
    channels = y.shape[3]
    filter_scales = f.scales if len(f.scales) == channels else [f.scales[0]] * channels
    multipliers, shifts = [], []
    for s in filter_scales:
        # PopulateConvolutionQuantizationParams: float scales widened to double.
        real = float(np.float32(x.scale)) * float(np.float32(s)) / float(np.float32(y.scale))
        m, sh = quantize_multiplier(real)
        multipliers.append(m)
        shifts.append(sh)
    return multipliers, shifts


def _add(
    i: int, ins: list[int], outs: list[int], opts: Any, tensors: list[_Tensor], w: _Writer
) -> bytes:
    if len(ins) != 2 or len(outs) != 1:
        raise UnsupportedModelError(f"op {i}: ADD needs two inputs and one output")
    a = _int8(tensors, ins[0], "input", i)
    b = _int8(tensors, ins[1], "input", i)
    y = _int8(tensors, outs[0], "output", i)
    if a.shape != b.shape or a.shape != y.shape:
        raise UnsupportedModelError(f"op {i}: broadcasting ADD is not supported")
    # add.cc Prepare for int8: the max is taken in float, the ratios in double.
    twice_max = float(np.float32(2) * max(np.float32(a.scale), np.float32(b.scale)))
    left_shift = 20
    m1, s1 = quantize_multiplier(_f32(a.scale) / twice_max)
    m2, s2 = quantize_multiplier(_f32(b.scale) / twice_max)
    out_real = twice_max / float(np.float32((1 << left_shift) * np.float32(y.scale)))
    mo, so = quantize_multiplier(out_real)
    params = struct.pack("<7i", left_shift, m1, s1, m2, s2, mo, so)
    return _op_record(
        _OP_ADD,
        ins,
        outs,
        rounding=_ROUNDING[_OP_ADD],
        act=_activation_range(int(opts.fusedActivationFunction), y.scale, y.zero_point),
        params=(w.place(params), len(params)),
    )


def _softmax(
    i: int, ins: list[int], outs: list[int], opts: Any, tensors: list[_Tensor], w: _Writer
) -> bytes:
    if len(ins) != 1 or len(outs) != 1:
        raise UnsupportedModelError(f"op {i}: SOFTMAX needs one input and one output")
    x = _int8(tensors, ins[0], "input", i)
    y = _int8(tensors, outs[0], "output", i)
    if x.shape != y.shape:
        raise ModelError(f"op {i}: softmax input and output shapes differ")
    table = softmax_table(x.scale, float(opts.beta))
    params = table.astype("<f4").tobytes()
    return _op_record(_OP_SOFTMAX, ins, outs, params=(w.place(params), len(params)))


# -- which rounding LiteRT's CONV_2D uses here ----------------------------------------------

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(v: np.ndarray) -> np.ndarray:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = a * b
    s = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C division truncates toward zero
    return np.where((a == b) & (a == _I32_MIN), _I32_MAX, q)


def requantize(
    acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, rounding: int
) -> np.ndarray:
    """``sc_mul_quantized`` of sc_kernels.h on int64 arrays (broadcasting)."""
    acc = np.asarray(acc, np.int64)
    m = np.asarray(multiplier, np.int64)
    shift = np.asarray(shift, np.int64)
    if rounding == ROUNDING_SINGLE:
        total = 31 - shift
        out = (acc * m + (np.int64(1) << (total - 1))) >> total
        return np.asarray(np.clip(out, _I32_MIN, _I32_MAX), np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    high = _srdhm(_wrap32(acc << left), m)
    if rounding == ROUNDING_DOUBLE:
        mask = (np.int64(1) << right) - 1
        threshold = (mask >> 1) + (high < 0)
        return np.asarray((high >> right) + ((high & mask) > threshold), np.int64)
    nudge = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    # ruy's rounding right shift: an overflowing add yields 2^(31 - right) instead.
    rounded = np.where(
        high > _I32_MAX - nudge, np.int64(1) << (31 - right), (high + nudge) >> right
    )
    return np.asarray(rounded, np.int64)


def detect_conv_rounding(package: ModelPackage, frames: int = 3) -> tuple[int, str]:
    """The ``ROUNDING_*`` LiteRT's CONV_2D uses on this machine, and how it was decided.

    Runs a 1x1 convolution's op segment in LiteRT on random full-range inputs and
    recomputes it with each rounding (a 1x1 convolution is a matrix product); the one that
    reproduces every output byte wins.
    """
    from sciot_mqtt.models.runtime import make_interpreter

    model = _read_model(package)
    sg = model.subgraphs[0]
    tensors = _tensors(model)
    candidates = []
    for i, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        if (
            max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
            != schema.BuiltinOperator.CONV_2D
        ):
            continue
        f = tensors[int(op.inputs[1])]
        opts = op.builtinOptions
        if len(f.shape) == 4 and f.shape[1:3] == (1, 1) and (opts.strideW, opts.strideH) == (1, 1):
            # No fused activation first: its clamp hides the negative ties.
            candidates.append((int(opts.fusedActivationFunction) != 0, i))
    fallback = _ROUNDING[_OP_CONV]
    if not candidates:
        return fallback, "assumed: no 1x1 CONV_2D to measure LiteRT on"
    _, i = min(candidates)
    op = sg.operators[i]
    x, f, y = (tensors[int(t)] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    bias_index = int(op.inputs[2]) if len(op.inputs) > 2 else -1
    bias = (
        np.frombuffer(tensors[bias_index].data or b"", "<i4").astype(np.int64)
        if bias_index >= 0
        else np.zeros(y.shape[3], np.int64)
    )
    weights = np.frombuffer(f.data or b"", np.int8).reshape(f.shape[0], -1).astype(np.int64)
    multipliers, shifts = (np.asarray(v, np.int64) for v in _channel_multipliers(x, f, y))
    lo, hi = _activation_range(
        int(op.builtinOptions.fusedActivationFunction), y.scale, y.zero_point
    )
    interpreter = make_interpreter(package.op_segment_path(i))
    (in_detail,) = interpreter.get_input_details()
    (out_detail,) = interpreter.get_output_details()
    rng = np.random.default_rng(0)
    matching = set(ROUNDINGS.values())
    for _ in range(frames):
        frame = rng.integers(-128, 128, x.shape, dtype=np.int8)
        interpreter.set_tensor(in_detail["index"], frame)
        interpreter.invoke()
        want = interpreter.get_tensor(out_detail["index"]).reshape(-1, y.shape[3])
        acc = (frame.reshape(-1, x.shape[3]).astype(np.int64) - x.zero_point) @ weights.T + bias
        for rounding in list(matching):
            got = np.clip(requantize(acc, multipliers, shifts, rounding) + y.zero_point, lo, hi)
            if not np.array_equal(got, want):
                matching.discard(rounding)
    names = {v: k for k, v in ROUNDINGS.items()}
    if not matching:
        raise UnsupportedModelError(
            f"LiteRT's CONV_2D (op {i}) on this machine rounds like none of "
            f"{sorted(ROUNDINGS)}; the C kernels cannot match it bit for bit"
        )
    chosen = fallback if fallback in matching else min(matching)
    return chosen, f"measured on op {i} against LiteRT: {names[chosen]}"


# -- C sources ---------------------------------------------------------------------------


def c_identifier(model_id: str) -> str:
    ident = "".join(c if c.isalnum() else "_" for c in model_id)
    return ident if ident and not ident[0].isdigit() else f"m_{ident}"


def _c_array(name: str, data: bytes) -> str:
    lines = []
    for k in range(0, len(data), 16):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[k : k + 16]) + ",")
    body = "\n".join(lines) if lines else "    0x00,"
    return f"const uint8_t {name}[{max(len(data), 1)}] SCIOT_ALIGNED16 = {{\n{body}\n}};\n"


@dataclass(frozen=True, slots=True)
class ExportedFiles:
    blob: Path
    model_c: Path
    model_h: Path
    segments_c: Path
    segments_h: Path

    def all(self) -> list[Path]:
        return [self.blob, self.model_c, self.model_h, self.segments_c, self.segments_h]


def export_c(
    package: ModelPackage, out_dir: str | Path, conv_rounding: int | None = None
) -> ExportedFiles:
    """Write ``<id>_model.bin``, ``<id>_model.{c,h}`` and ``<id>_segments.{c,h}``."""
    out = Path(out_dir)
    ident = c_identifier(package.model_id)
    blob = export_blob(package, conv_rounding)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{ident}_model"
    guard = f"SCIOT_{ident.upper()}_MODEL_H"
    files = ExportedFiles(
        blob=out / f"{stem}.bin",
        model_c=out / f"{stem}.c",
        model_h=out / f"{stem}.h",
        segments_c=out / f"{ident}_segments.c",
        segments_h=out / f"{ident}_segments.h",
    )
    files.blob.write_bytes(blob)
    head = f"/* {_GENERATED}\n * model {package.model_id}, sha256 {package.sha256} */\n"
    files.model_h.write_text(
        f"{head}#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n#include <stdint.h>\n\n"
        f"{_ALIGNED16}\n"
        f"/* sciot model blob (sciot_ops.h, version {BLOB_VERSION}) */\n"
        f"extern const uint8_t sciot_{ident}_blob[{len(blob)}];\n"
        f"#define SCIOT_{ident.upper()}_BLOB_LEN {len(blob)}u\n\n#endif\n"
    )
    files.model_c.write_text(
        f'{head}#include "{files.model_h.name}"\n\n' + _c_array(f"sciot_{ident}_blob", blob)
    )
    seg_guard = f"SCIOT_{ident.upper()}_SEGMENTS_H"
    for op in package.ops:
        if len(op.inputs) > 4 or len(op.outputs) > 2:
            raise UnsupportedModelError(f"op {op.index}: more than 4 inputs or 2 outputs")
    files.segments_h.write_text(
        f"{head}#ifndef {seg_guard}\n#define {seg_guard}\n\n#include <stddef.h>\n"
        f"#include <stdint.h>\n\n{_ALIGNED16}\n{_SEGMENT_TYPE}\n"
        f"#define SCIOT_{ident.upper()}_NUM_OPS {package.num_ops}u\n"
        f"extern const sciot_segment sciot_{ident}_op_segments[{package.num_ops}];\n\n#endif\n"
    )
    parts = [f'{head}#include "{files.segments_h.name}"\n\n']
    for i in range(package.num_ops):
        parts.append(_c_array(f"sciot_{ident}_op_{i:04d}", package.op_segment_path(i).read_bytes()))
        parts.append("\n")
    parts.append(f"const sciot_segment sciot_{ident}_op_segments[{package.num_ops}] = {{\n")
    for op in package.ops:
        n = f"sciot_{ident}_op_{op.index:04d}"
        ins = ", ".join(str(t) for t in op.inputs) or "0"
        outs = ", ".join(str(t) for t in op.outputs) or "0"
        parts.append(
            f"    {{{n}, sizeof {n}, {len(op.inputs)}, {len(op.outputs)}, {{{ins}}}, {{{outs}}}}},"
            f" /* {op.op} */\n"
        )
    parts.append("};\n")
    files.segments_c.write_text("".join(parts))
    return files
