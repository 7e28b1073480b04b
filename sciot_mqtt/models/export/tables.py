"""Tables the elementwise C kernels look values up in, computed as LiteRT computes them.

An int8 input has 256 values, so any elementwise function of it (LOGISTIC, TANH,
DEQUANTIZE) is a 256-entry table; LiteRT itself fills one at ``Prepare`` for LOGISTIC and
TANH (``LUTPopulate``), and DEQUANTIZE's per-element float arithmetic is reproduced the same
way. QUANTIZE's float input has 2^32 values, but its result is a monotone step function of
the float, so 255 thresholds (plus what LiteRT does where its float -> int32 conversion
overflows) describe it exactly. Every float operation here is the one LiteRT's C++ does, in
the same precision (``numpy.float32`` for ``float``, Python floats for ``double``).

LiteRT's x86-64 build defines ``USE_NEON`` and runs NEON code through SSE (NEON_2_SSE), so
QUANTIZE and DEQUANTIZE compute blocks of 8 elements one way and the remaining tail another;
each table comes in the two variants, and the kernel is told how many elements the blocks
cover (``vector_count``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import numpy as np

from sciot_mqtt.models.export.quant import quantize_multiplier

__all__ = [
    "QUANTIZE_MAP",
    "dequantize_tables",
    "hard_swish_params",
    "lut_int8",
    "quantize_maps",
]

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
#: One QUANTIZE map of kernels.h: int32 thresholds[255], lo_key, hi_key, int8 outside, 3 x 0.
QUANTIZE_MAP = struct.Struct("<255iiib3x")
_INF_KEY = 0x7F800000


def _as_int8_index() -> np.ndarray:
    """The int8 value each table slot stands for: slot ``u`` holds ``int8(u)``."""
    return np.arange(256, dtype=np.uint8).view(np.int8).astype(np.int64)


def lut_int8(
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    transform: Callable[[np.float32], np.float32],
) -> bytes:
    """``LUTPopulateInt8``: the 256-byte table of ``transform``, indexed by ``(uint8_t)x``."""
    f32 = np.float32
    inverse_scale = f32(1) / f32(output_scale)
    table = bytearray(256)
    for u, val in enumerate(_as_int8_index()):
        dequantized = f32(input_scale) * f32(val - input_zero_point)
        transformed = transform(dequantized)
        rescaled = _round_half_away(float(f32(transformed * inverse_scale)))
        quantized = math.trunc(float(f32(f32(rescaled) + f32(output_zero_point))))
        table[u] = min(max(quantized, -128), 127) & 0xFF
    return bytes(table)


def logistic(expf: Callable[[float], float]) -> Callable[[np.float32], np.float32]:
    """``1.0f / (1.0f + std::exp(-value))`` in float."""
    f32 = np.float32
    return lambda v: f32(f32(1) / (f32(1) + f32(expf(float(-v)))))


def _round_half_away(x: float) -> float:
    """``std::round`` (exact for doubles, unlike ``floor(x + 0.5)``)."""
    t = math.trunc(x)
    if abs(x - t) >= 0.5:
        t += 1 if x > 0 else -1
    return float(t)


def _to_int16_multiplier(m: int) -> int:
    """``DownScaleInt32ToInt16Multiplier``."""
    if m >= _I32_MAX - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16


def hard_swish_params(input_scale: float, output_scale: float) -> tuple[int, int, int, int]:
    """``HardSwishPrepare``: int16 output multiplier and exponent, int16 "relu-ish" multiplier
    and exponent; None of them valid when the output exponent is positive (LiteRT refuses)."""
    f32 = np.float32
    hires_input_scale = f32(f32(1) / f32(128)) * f32(input_scale)
    reluish_scale = f32(3) / f32(32768)
    output_multiplier = f32(hires_input_scale / f32(output_scale))
    out_m, out_exp = quantize_multiplier(float(output_multiplier))
    reluish_multiplier = f32(hires_input_scale / reluish_scale)
    rel_m, rel_exp = quantize_multiplier(float(reluish_multiplier))
    return _to_int16_multiplier(out_m), out_exp, _to_int16_multiplier(rel_m), rel_exp


def dequantize_tables(scale: float, zero_point: int) -> tuple[bytes, bytes]:
    """``optimized_ops::Dequantize`` (int8 -> float32): the NEON blocks' table
    (``float(val) * float(scale) + float(-zp * scale)``, two float roundings) and the scalar
    tail's (``float(scale * (val - zp))`` in double), each 256 little-endian float32."""
    vals = _as_int8_index()
    scale_d = float(np.float32(scale))
    scale_f = np.float32(scale_d)
    zero_times_scale = np.float32(-zero_point * scale_d)
    vector = (vals.astype(np.float32) * scale_f + zero_times_scale).astype("<f4")
    tail = np.array([np.float32(scale_d * float(v - zero_point)) for v in vals], "<f4")
    return vector.tobytes(), tail.tobytes()


# -- QUANTIZE (float32 -> int8) -----------------------------------------------------------


def _key_to_float(keys: np.ndarray) -> np.ndarray:
    """The float32 of each order-preserving key (C: ``sciot_float_key``'s inverse)."""
    keys = np.asarray(keys, np.int64)
    bits = np.where(keys >= 0, keys, 0x80000000 | (-keys)).astype(np.uint32)
    return bits.view(np.float32)


def _round_half_even(y: np.ndarray) -> np.ndarray:
    return np.asarray(np.rint(y), np.float64)


def _round_half_away_array(y: np.ndarray) -> np.ndarray:
    t = np.trunc(y)
    return np.asarray(t + np.where(np.abs(y - t) >= 0.5, np.sign(y), 0.0), np.float64)


def _vector_values(x: np.ndarray, scale: float) -> np.ndarray:
    """NEON blocks: ``x * (float)(1.0f / scale)`` in float, rounded to nearest even (SSE's
    cvtps2dq); out of int32 range (NaN too) the conversion yields INT32_MIN."""
    recip = np.float32(1.0 / float(np.float32(scale)))
    with np.errstate(over="ignore", invalid="ignore"):
        y = (x.astype(np.float32) * recip).astype(np.float64)
    ok = (y >= -(2.0**31)) & (y < 2.0**31)
    return np.where(ok, _round_half_even(np.where(ok, y, 0.0)), _I32_MIN).astype(np.int64)


def _tail_values(x: np.ndarray, scale: float) -> np.ndarray:
    """Scalar tail: ``std::round((double)x / scale)``, then a truncating conversion that
    yields INT32_MIN out of range (cvttsd2si)."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = x.astype(np.float64) / float(np.float32(scale))
    v = _round_half_away_array(np.where(np.isfinite(y), y, 0.0))
    ok = np.isfinite(y) & (v >= _I32_MIN) & (v <= _I32_MAX)
    return np.where(ok, v, _I32_MIN).astype(np.int64)


def _wrap32(v: np.ndarray) -> np.ndarray:
    return np.asarray(((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31), np.int64)


def _quantize_map(values: Callable[[np.ndarray], np.ndarray], zero_point: int) -> bytes:
    """Thresholds of the step function ``clamp(int32(values(x) + zp))`` over float keys,
    and the keys between which it is that function (no conversion overflow, no wrap)."""

    def regular(keys: np.ndarray) -> np.ndarray:
        v = values(_key_to_float(keys))
        return (v > _I32_MIN) & (v + zero_point <= _I32_MAX) & (v + zero_point >= _I32_MIN)

    def output(keys: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip(_wrap32(values(_key_to_float(keys)) + zero_point), -128, 127))

    # Largest regular key above 0 and smallest below (0 itself is regular).
    lo, hi = 0, _INF_KEY  # regular(lo), not regular(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if regular(np.array([mid], np.int64))[0] else (lo, mid)
    hi_key = lo
    lo, hi = -_INF_KEY, 0  # not regular(lo), regular(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if regular(np.array([mid], np.int64))[0] else (mid, hi)
    lo_key = hi
    # For each level -127..127, the first key in [lo_key, hi_key] that reaches it (or
    # hi_key + 1 if none does): bisection, all levels at once.
    levels = np.arange(-127, 128, dtype=np.int64)
    first = np.full(255, lo_key, np.int64)
    last = np.full(255, hi_key + 1, np.int64)
    while np.any(first < last):
        active = first < last
        middle = (first + last) // 2  # <= hi_key while active
        reached = output(np.minimum(middle, hi_key)) >= levels
        last = np.where(active & reached, middle, last)
        first = np.where(active & ~reached, middle + 1, first)
    outside = int(np.clip(_wrap32(np.array([_I32_MIN + zero_point]))[0], -128, 127))
    return QUANTIZE_MAP.pack(*(int(t) for t in first), lo_key, hi_key, outside)


def quantize_maps(scale: float, zero_point: int) -> tuple[bytes, bytes]:
    """``optimized_ops::AffineQuantize`` (float32 -> int8) as the NEON blocks' map and the
    scalar tail's (kernels.h ``SCIOT_QUANTIZE_MAP_BYTES`` each)."""
    return (
        _quantize_map(lambda x: _vector_values(x, scale), zero_point),
        _quantize_map(lambda x: _tail_values(x, scale), zero_point),
    )
