"""Which requantization rounding LiteRT's CONV_2D uses on this machine, measured.

DEPTHWISE_CONV_2D and ADD run TFLite's own kernels, which keep the reference rounding.
CONV_2D runs as a ruy GEMM whose rounding depends on the CPU ruy picks (AVX2: ties up;
ARM NEON and some AVX-512 builds: single), so the C kernels must be told which one to
reproduce bit for bit.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import UnsupportedModelError
from sciot_mqtt.models.export.quant import (
    ROUNDING_DOUBLE_TIES_UP,
    ROUNDINGS,
    activation_range,
    channel_multipliers,
    requantize,
)
from sciot_mqtt.models.export.source import read_source
from sciot_mqtt.models.package import ModelPackage

__all__ = ["CONV_ROUNDING_FALLBACK", "detect_conv_rounding"]

#: Assumed when the model has no convolution to measure it on (x86 with AVX2).
CONV_ROUNDING_FALLBACK = ROUNDING_DOUBLE_TIES_UP


def detect_conv_rounding(package: ModelPackage, frames: int = 3) -> tuple[int, str]:
    """The ``ROUNDING_*`` LiteRT's CONV_2D uses on this machine, and how it was decided.

    Runs a 1x1 convolution's op segment in LiteRT on random full-range inputs and
    recomputes it with each rounding (a 1x1 convolution is a matrix product); the one that
    reproduces every output byte wins.
    """
    from sciot_mqtt.models.runtime import make_interpreter

    source = read_source(package)
    tensors = source.tensors
    candidates = []
    for i, op in enumerate(source.operators):
        if source.op_code(op) != schema.BuiltinOperator.CONV_2D:
            continue
        f = tensors[int(op.inputs[1])]
        opts = op.builtinOptions
        if len(f.shape) == 4 and f.shape[1:3] == (1, 1) and (opts.strideW, opts.strideH) == (1, 1):
            # No fused activation first: its clamp hides the negative ties.
            candidates.append((int(opts.fusedActivationFunction) != 0, i))
    if not candidates:
        return CONV_ROUNDING_FALLBACK, "assumed: no 1x1 CONV_2D to measure LiteRT on"
    _, i = min(candidates)
    op = source.operators[i]
    x, f, y = (tensors[int(t)] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    bias_index = int(op.inputs[2]) if len(op.inputs) > 2 else -1
    bias = (
        np.frombuffer(tensors[bias_index].data or b"", "<i4").astype(np.int64)
        if bias_index >= 0
        else np.zeros(y.shape[3], np.int64)
    )
    weights = np.frombuffer(f.data or b"", np.int8).reshape(f.shape[0], -1).astype(np.int64)
    multipliers, shifts = (
        np.asarray(v, np.int64) for v in channel_multipliers(x.scale, f.scales, y.scale, y.shape[3])
    )
    lo, hi = activation_range(int(op.builtinOptions.fusedActivationFunction), y.scale, y.zero_point)
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
    chosen = CONV_ROUNDING_FALLBACK if CONV_ROUNDING_FALLBACK in matching else min(matching)
    return chosen, f"measured on op {i} against LiteRT: {names[chosen]}"
