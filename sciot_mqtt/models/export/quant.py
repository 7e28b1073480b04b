"""Integer quantization maths, computed the way LiteRT computes it at ``Prepare`` time.

Everything that needs floating point or libm is done here, in Python, so the C kernels
stay integer-only (softmax keeps a few float multiply-adds, as LiteRT's does).
``requantize`` is the C kernels' ``sciot_mul_quantized`` in numpy, for each rounding.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import UnsupportedModelError

__all__ = [
    "ROUNDINGS",
    "ROUNDING_DOUBLE",
    "ROUNDING_DOUBLE_TIES_UP",
    "ROUNDING_SINGLE",
    "activation_range",
    "channel_multipliers",
    "f32",
    "libm",
    "quantize_multiplier",
    "requantize",
    "softmax_table",
]

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

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def f32(x: Any) -> float:
    """``x`` rounded to float32, as a Python float (C++ ``float`` arithmetic)."""
    return float(np.float32(x))


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


def channel_multipliers(
    input_scale: float, filter_scales: Sequence[float], output_scale: float, channels: int
) -> tuple[list[int], list[int]]:
    """Per-output-channel multipliers and shifts of a convolution (per-tensor filters too)."""
    if len(filter_scales) != channels:
        filter_scales = [filter_scales[0]] * channels
    multipliers, shifts = [], []
    for s in filter_scales:
        # PopulateConvolutionQuantizationParams: float scales widened to double.
        real = f32(input_scale) * f32(s) / f32(output_scale)
        m, sh = quantize_multiplier(real)
        multipliers.append(m)
        shifts.append(sh)
    return multipliers, shifts


def activation_range(act: int, scale: float, zero_point: int) -> tuple[int, int]:
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


def libm(name: str) -> Callable[[float], float]:
    """A float function of the C library LiteRT links (``expf``, ``tanhf``): it fills its
    tables with them, and a transcendental function's last bit is the library's, not numpy's."""
    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    fn = getattr(lib, name)
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    result: Callable[[float], float] = fn
    return result


def softmax_table(input_scale: float, beta: float) -> np.ndarray:
    """``optimized_ops::PopulateSoftmaxLookupTable`` in float32."""
    expf = libm("expf")
    scale = np.float32(-np.float32(input_scale) * np.float32(beta))
    table = np.zeros(256, dtype=np.float32)
    for val in range(256):
        table[255 - val] = expf(float(np.float32(scale * np.float32(val))))
    return table


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
    """``sciot_mul_quantized`` of kernels.h on int64 arrays (broadcasting)."""
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
