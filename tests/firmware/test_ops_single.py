"""Every C operator alone against LiteRT, bit for bit, over shapes, quantizations and
fused activations chosen to reach each kernel's corners.

Each case is a one-operator graph written with ``GraphBuilder``, prepared and exported like
any user model, run by LiteRT (the project's interpreter settings) and by the C kernels
(``libsciot_ops_py``) on random full-range inputs and on constant extremes; the sanitized
command-line driver runs every case once more under ASan + UBSan. Shapes are picked so that
LiteRT's NEON blocks (SSE-emulated on x86-64) and its scalar tails both get elements, and
quantizations so that requantization ties are frequent.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.export import detect_conv_rounding, export_blob
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.runtime import SegmentRunner
from tests.firmware.conftest import COps, pack, unpack
from tests.firmware.tflite_build import GraphBuilder, Tensor

OP = schema.BuiltinOperator
OPT = schema.BuiltinOptions
ACT = schema.ActivationFunctionType
SAME, VALID = schema.Padding.SAME, schema.Padding.VALID


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    # Extra float32 inputs for a float input (QUANTIZE): values LiteRT rounds at an edge.
    floats: Callable[[tuple[int, ...]], Iterator[np.ndarray]] | None = None


def _one(
    code: int,
    ins: list[Tensor | np.ndarray],
    outs: list[Tensor],
    options_type: int = OPT.NONE,
    options: Any = None,
) -> bytes:
    """A graph of one operator; ``np.ndarray`` inputs become constants (int8 arrays take the
    output's quantization)."""
    b = GraphBuilder()
    index = []
    graph_inputs = []
    for t in ins:
        if isinstance(t, np.ndarray):
            q = outs[0]
            scale = q.scale if t.dtype == np.int8 else None
            index.append(b.const(t, scale=scale, zero_point=q.zero_point if scale else 0))
        else:
            index.append(b.tensor(t))
            graph_inputs.append(index[-1])
    out_index = [b.tensor(t) for t in outs]
    b.op(code, index, out_index, options_type, options)
    return b.build(graph_inputs, out_index)


def _options(cls: Any, **fields: Any) -> Any:
    o = cls()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


def q8(shape: tuple[int, ...], scale: float, zp: int) -> Tensor:
    return Tensor(shape, "int8", scale, zp)


def f32t(shape: tuple[int, ...]) -> Tensor:
    return Tensor(shape, "float32")


_rng = np.random.default_rng(2024)


def _weights(shape: tuple[int, ...], lo: int = -127, hi: int = 128) -> np.ndarray:
    return _rng.integers(lo, hi, shape, dtype=np.int8)


# -- cases, operator by operator ---------------------------------------------------------


def _fully_connected(
    rows_shape: tuple[int, ...],
    depth: int,
    channels: int,
    act: int,
    *,
    bias: bool = True,
    per_channel: bool = False,
    keep: bool = False,
    out_shape: tuple[int, ...] | None = None,
) -> bytes:
    s_in, s_w = 0.021, [0.0093] * channels
    if per_channel:
        s_w = list(_rng.uniform(0.004, 0.012, channels))
    w = _weights((channels, depth), -9, 10)
    ins: list[Tensor | np.ndarray] = [q8((*rows_shape, depth), s_in, 7)]
    b = GraphBuilder()
    x = b.tensor(ins[0])  # type: ignore[arg-type]
    wt = b.const(w, scale=s_w if per_channel else s_w[0], zero_point=0)
    inputs = [x, wt]
    if bias:
        bias_scale = [s_in * s for s in s_w] if per_channel else s_in * s_w[0]
        inputs.append(b.const(_rng.integers(-300, 300, channels).astype(np.int32), bias_scale))
    rows = int(np.prod(rows_shape))
    y = b.act(out_shape or (rows, channels), 0.0061, -5)
    opts = _options(schema.FullyConnectedOptionsT, fusedActivationFunction=act, keepNumDims=keep)
    b.op(OP.FULLY_CONNECTED, inputs, [y], OPT.FullyConnectedOptions, opts)
    return b.build([x], [y])


def _pool(
    code: int,
    shape: tuple[int, ...],
    f: tuple[int, int],
    s: tuple[int, int],
    padding: int,
    act: int,
    out: tuple[int, int],
) -> bytes:
    opts = _options(
        schema.Pool2DOptionsT,
        padding=padding,
        strideW=s[1],
        strideH=s[0],
        filterWidth=f[1],
        filterHeight=f[0],
        fusedActivationFunction=act,
    )
    x = q8(shape, 0.05, -9)
    y = q8((1, *out, shape[3]), 0.05, -9)
    return _one(code, [x], [y], OPT.Pool2DOptions, opts)


def _mean(
    shape: tuple[int, ...],
    axes: list[int],
    keep: bool,
    out: tuple[int, ...],
    in_q: tuple[float, int],
    out_q: tuple[float, int],
) -> bytes:
    opts = _options(schema.ReducerOptionsT, keepDims=keep)
    return _one(
        OP.MEAN,
        [q8(shape, *in_q), np.array(axes, np.int32)],
        [q8(out, *out_q)],
        OPT.ReducerOptions,
        opts,
    )


def _binary(
    code: int,
    a: tuple[int, ...],
    b: tuple[int, ...] | np.ndarray,
    y: tuple[int, ...],
    qa: tuple[float, int],
    qb: tuple[float, int],
    qy: tuple[float, int],
    act: int = ACT.NONE,
) -> bytes:
    g = GraphBuilder()
    ta = g.act(a, *qa)
    tb = g.const(b, scale=qb[0], zero_point=qb[1]) if isinstance(b, np.ndarray) else g.act(b, *qb)
    ty = g.act(y, *qy)
    if code == OP.ADD:
        g.op(
            code,
            [ta, tb],
            [ty],
            OPT.AddOptions,
            _options(schema.AddOptionsT, fusedActivationFunction=act),
        )
    else:
        g.op(
            code,
            [ta, tb],
            [ty],
            OPT.MulOptions,
            _options(schema.MulOptionsT, fusedActivationFunction=act),
        )
    return g.build([ta] if isinstance(b, np.ndarray) else [ta, tb], [ty])


def _pad(shape: tuple[int, ...], pads: list[list[int]], value: int | None = None) -> bytes:
    out = tuple(d + p[0] + p[1] for d, p in zip(shape, pads, strict=True))
    ins: list[Tensor | np.ndarray] = [q8(shape, 0.03, 11), np.array(pads, np.int32)]
    if value is None:
        return _one(OP.PAD, ins, [q8(out, 0.03, 11)], OPT.PadOptions, schema.PadOptionsT())
    ins.append(np.array([value], np.int8))
    return _one(OP.PADV2, ins, [q8(out, 0.03, 11)], OPT.PadV2Options, schema.PadV2OptionsT())


def _depthwise(channels_in: int, multiplier: int, k: int, stride: int, act: int) -> bytes:
    g = GraphBuilder()
    oc = channels_in * multiplier
    x = g.act((1, 9, 7, channels_in), 0.047, 3)
    scales = list(_rng.uniform(0.002, 0.02, oc))
    f = g.const(_weights((1, k, k, oc)), scale=scales, quantized_dimension=3)
    bias = g.const(_rng.integers(-900, 900, oc).astype(np.int32), [0.047 * s for s in scales])
    h, w = (9 + stride - 1) // stride, (7 + stride - 1) // stride
    y = g.act((1, h, w, oc), 0.11, -2)
    opts = _options(
        schema.DepthwiseConv2DOptionsT,
        padding=SAME,
        strideW=stride,
        strideH=stride,
        depthMultiplier=multiplier,
        fusedActivationFunction=act,
        dilationWFactor=1,
        dilationHFactor=1,
    )
    g.op(OP.DEPTHWISE_CONV_2D, [x, f, bias], [y], OPT.DepthwiseConv2DOptions, opts)
    return g.build([x], [y])


def _conv_1x1_pixel(channels_in: int, channels_out: int) -> bytes:
    """A 1x1 convolution of a single pixel: LiteRT's GEMV path rather than ruy's GEMM."""
    g = GraphBuilder()
    x = g.act((1, 1, 1, channels_in), 0.02, -4)
    f = g.const(_weights((channels_out, 1, 1, channels_in), -7, 8), scale=0.01)
    bias = g.const(_rng.integers(-99, 99, channels_out).astype(np.int32), scale=0.02 * 0.01)
    y = g.act((1, 1, 1, channels_out), 0.0005, 3)
    opts = _options(
        schema.Conv2DOptionsT,
        padding=VALID,
        strideW=1,
        strideH=1,
        dilationWFactor=1,
        dilationHFactor=1,
    )
    g.op(OP.CONV_2D, [x, f, bias], [y], OPT.Conv2DOptions, opts)
    return g.build([x], [y])


def _quantize_floats(scale: float, zp: int) -> Callable[[tuple[int, ...]], Iterator[np.ndarray]]:
    """Floats on and next to every rounding edge, and what overflows LiteRT's conversion."""

    def frames(shape: tuple[int, ...]) -> Iterator[np.ndarray]:
        n = int(np.prod(shape))
        halves = ((np.arange(-140, 140) + 0.5) * np.float32(scale)).astype(np.float32)
        edges = np.concatenate(
            [halves, np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, -np.inf)]
        ).astype(np.float32)
        specials = np.array(
            [
                np.inf,
                -np.inf,
                np.nan,
                3e38,
                -3e38,
                2.2e9 * scale,
                -2.2e9 * scale,
                2.147483e9 * scale,
                -2.147483e9 * scale,
                0.0,
                -0.0,
                1e-40,
                -1e-40,
            ],
            np.float32,
        )
        values = np.concatenate([edges, specials])
        # Every value once in a NEON block and once in the tail.
        for start in range(0, len(values), max(n, 1)):
            chunk = values[start : start + n]
            for roll in (0, n // 2 + 1):
                frame = np.resize(np.roll(chunk, roll), n).astype(np.float32)
                yield frame.reshape(shape)
        yield _rng.uniform(-200 * scale, 200 * scale, shape).astype(np.float32)

    return frames


CASES: list[Case] = [
    # FULLY_CONNECTED: one row (LiteRT's GEMV) and several (ruy), with and without bias,
    # per-tensor and per-channel weights, 4-D input, keep_num_dims.
    Case("fc_row_bias", lambda: _fully_connected((1,), 32, 16, ACT.NONE)),
    Case("fc_small_relu", lambda: _fully_connected((1,), 4, 3, ACT.RELU)),
    Case("fc_rows_relu6", lambda: _fully_connected((4,), 8, 4, ACT.RELU6, bias=False)),
    Case("fc_per_channel", lambda: _fully_connected((1,), 24, 10, ACT.NONE, per_channel=True)),
    Case("fc_4d_input", lambda: _fully_connected((1, 1, 1), 64, 12, ACT.NONE, out_shape=(1, 12))),
    Case(
        "fc_keep_dims",
        lambda: _fully_connected((1, 3), 5, 7, ACT.RELU_N1_TO_1, keep=True, out_shape=(1, 3, 7)),
    ),
    # Pools: SAME and VALID, odd windows, the DS-CNN global pool, fused activations.
    Case(
        "avg_same_s2",
        lambda: _pool(OP.AVERAGE_POOL_2D, (1, 9, 7, 5), (3, 3), (2, 2), SAME, ACT.NONE, (5, 4)),
    ),
    Case(
        "avg_global",
        lambda: _pool(
            OP.AVERAGE_POOL_2D, (1, 25, 5, 64), (25, 5), (25, 5), VALID, ACT.NONE, (1, 1)
        ),
    ),
    Case(
        "avg_relu6",
        lambda: _pool(OP.AVERAGE_POOL_2D, (1, 6, 6, 20), (2, 2), (2, 2), VALID, ACT.RELU6, (3, 3)),
    ),
    Case(
        "avg_3x2_relu",
        lambda: _pool(OP.AVERAGE_POOL_2D, (1, 5, 5, 3), (3, 2), (1, 1), SAME, ACT.RELU, (5, 5)),
    ),
    Case(
        "max_same_s2",
        lambda: _pool(OP.MAX_POOL_2D, (1, 9, 7, 5), (3, 3), (2, 2), SAME, ACT.NONE, (5, 4)),
    ),
    Case(
        "max_valid_relu",
        lambda: _pool(OP.MAX_POOL_2D, (1, 8, 8, 17), (2, 2), (2, 2), VALID, ACT.RELU, (4, 4)),
    ),
    # MEAN: LiteRT's optimized H,W mean (40 channels: two NEON blocks and a tail of 8, other
    # scales), and its reference mean for everything else.
    Case(
        "mean_hw_keep_40",
        lambda: _mean((1, 6, 5, 40), [1, 2], True, (1, 1, 1, 40), (0.2, -7), (0.071, 13)),
    ),
    Case(
        "mean_hw_keep_7",
        lambda: _mean((1, 3, 3, 7), [2, 1], True, (1, 1, 1, 7), (0.01, 5), (0.01, 5)),
    ),
    Case(
        "mean_hw_flat", lambda: _mean((1, 6, 6, 24), [1, 2], False, (1, 24), (0.05, -3), (0.02, 9))
    ),
    Case(
        "mean_last_axis",
        lambda: _mean((1, 4, 5, 6), [-1], True, (1, 4, 5, 1), (0.05, 10), (0.03, -20)),
    ),
    Case("mean_2d", lambda: _mean((3, 17), [1], False, (3,), (0.1, 0), (0.1, 0))),
    # RESHAPE, CONCATENATION.
    Case(
        "reshape",
        lambda: _one(
            OP.RESHAPE,
            [q8((1, 4, 4, 3), 0.1, 2), np.array([1, 48], np.int32)],
            [q8((1, 48), 0.1, 2)],
        ),
    ),
    Case(
        "concat_last",
        lambda: _one(
            OP.CONCATENATION,
            [q8((1, 3), 0.2, 1), q8((1, 5), 0.2, 1)],
            [q8((1, 8), 0.2, 1)],
            OPT.ConcatenationOptions,
            _options(schema.ConcatenationOptionsT, axis=-1),
        ),
    ),
    Case(
        "concat_axis1_three",
        lambda: _one(
            OP.CONCATENATION,
            [q8((1, 2, 3, 4), 0.2, 1), q8((1, 1, 3, 4), 0.2, 1), q8((1, 3, 3, 4), 0.2, 1)],
            [q8((1, 6, 3, 4), 0.2, 1)],
            OPT.ConcatenationOptions,
            _options(schema.ConcatenationOptionsT, axis=1),
        ),
    ),
    Case(
        "concat_axis2_four",
        lambda: _one(
            OP.CONCATENATION,
            [q8((1, 2, k, 3), 0.1, -4) for k in (1, 2, 3, 4)],
            [q8((1, 2, 10, 3), 0.1, -4)],
            OPT.ConcatenationOptions,
            _options(schema.ConcatenationOptionsT, axis=2),
        ),
    ),
    # MUL: elementwise (NEON blocks of 16 and a tail), broadcasting, a scalar constant, a
    # fused activation, and an output scale so small the products leave int16.
    Case(
        "mul_same_37",
        lambda: _binary(OP.MUL, (1, 37), (1, 37), (1, 37), (0.05, 3), (0.02, -9), (0.003, 4)),
    ),
    Case(
        "mul_channel_bcast",
        lambda: _binary(
            OP.MUL, (1, 4, 4, 8), (1, 1, 1, 8), (1, 4, 4, 8), (0.05, 3), (0.02, -128), (0.01, 0)
        ),
    ),
    Case(
        "mul_scalar_const",
        lambda: _binary(
            OP.MUL,
            (1, 1, 1, 20),
            np.array(-77, np.int8),
            (1, 1, 1, 20),
            (0.0235, -128),
            (0.00065, -128),
            (0.0039, -128),
        ),
    ),
    Case(
        "mul_relu6",
        lambda: _binary(
            OP.MUL, (2, 3, 5), (2, 3, 5), (2, 3, 5), (0.1, 0), (0.1, 0), (0.05, -128), ACT.RELU6
        ),
    ),
    Case(
        "mul_int16_overflow",
        lambda: _binary(OP.MUL, (1, 40), (1, 40), (1, 40), (1.0, 0), (1.0, 0), (0.5, 100)),
    ),
    # ADD elementwise: NEON blocks scale each input in one step; unequal scales make that
    # differ from the tail's two roundings now and then.
    Case(
        "add_same_48",
        lambda: _binary(OP.ADD, (1, 48), (1, 48), (1, 48), (0.031, 2), (0.0119, -7), (0.04, 1)),
    ),
    Case(
        "add_4d_relu",
        lambda: _binary(
            OP.ADD,
            (1, 5, 5, 16),
            (1, 5, 5, 16),
            (1, 5, 5, 16),
            (0.2, -3),
            (0.0007, 5),
            (0.21, -1),
            ACT.RELU,
        ),
    ),
    # The sum far beyond int16: LiteRT's blocks truncate it to 16 bits, its tail clamps.
    Case(
        "add_int16_wrap",
        lambda: _binary(OP.ADD, (1, 40), (1, 40), (1, 40), (1.0, 0), (0.7, 3), (0.001, -2)),
    ),
    # PAD and PADV2.
    Case("pad_hw", lambda: _pad((1, 4, 3, 5), [[0, 0], [1, 2], [2, 0], [0, 0]])),
    Case("pad_channels", lambda: _pad((1, 2, 2, 3), [[0, 0], [0, 0], [0, 0], [1, 4]])),
    Case("pad_2d", lambda: _pad((3, 4), [[1, 1], [0, 3]])),
    Case("padv2", lambda: _pad((1, 3, 3, 2), [[0, 0], [1, 1], [1, 1], [0, 0]], value=-100)),
    # HARD_SWISH with its multiplier exponents on both sides of zero.
    Case(
        "hard_swish_mbv3",
        lambda: _one(
            OP.HARD_SWISH, [q8((1, 6, 6, 24), 0.26, -128)], [q8((1, 6, 6, 24), 0.24, -128)]
        ),
    ),
    Case(
        "hard_swish_small",
        lambda: _one(OP.HARD_SWISH, [q8((1, 300), 0.0047, 12)], [q8((1, 300), 0.0023, 12)]),
    ),
    Case(
        "hard_swish_wide",
        lambda: _one(OP.HARD_SWISH, [q8((1, 300), 0.9, -3)], [q8((1, 300), 0.5, -70)]),
    ),
    # LOGISTIC and TANH (LiteRT's Prepare-time tables).
    Case(
        "logistic",
        lambda: _one(OP.LOGISTIC, [q8((1, 300), 0.071, -5)], [q8((1, 300), 1 / 256, -128)]),
    ),
    Case("tanh", lambda: _one(OP.TANH, [q8((1, 300), 0.035, 9)], [q8((1, 300), 1 / 128, 0)])),
    # QUANTIZE (float32 -> int8, NEON blocks of 8 and a tail; and int8 -> int8), DEQUANTIZE.
    Case(
        "quantize_19",
        lambda: _one(OP.QUANTIZE, [f32t((1, 19))], [q8((1, 19), 0.5, -3)]),
        floats=_quantize_floats(0.5, -3),
    ),
    Case(
        "quantize_zp_positive",
        lambda: _one(OP.QUANTIZE, [f32t((1, 8, 8, 2))], [q8((1, 8, 8, 2), 0.0039208927, 17)]),
        floats=_quantize_floats(0.0039208927, 17),
    ),
    Case(
        "quantize_5",
        lambda: _one(OP.QUANTIZE, [f32t((5,))], [q8((5,), 0.1, 0)]),
        floats=_quantize_floats(0.1, 0),
    ),
    Case(
        "requantize_37", lambda: _one(OP.QUANTIZE, [q8((1, 37), 0.011, 4)], [q8((1, 37), 0.03, -6)])
    ),
    Case(
        "requantize_up", lambda: _one(OP.QUANTIZE, [q8((1, 40), 0.03, 4)], [q8((1, 40), 0.011, -6)])
    ),
    Case(
        "dequantize_19",
        lambda: _one(OP.DEQUANTIZE, [q8((1, 19), 0.0066285944, -44)], [f32t((1, 19))]),
    ),
    Case("dequantize_4", lambda: _one(OP.DEQUANTIZE, [q8((4,), 0.1, 0)], [f32t((4,))])),
    # DEPTHWISE_CONV_2D: 12 channels (a NEON block of 8 and a tail), no activation so that
    # negative ties show; depth multiplier 2; CONV_2D on one pixel (LiteRT's GEMV).
    Case("depthwise_12_5x5", lambda: _depthwise(12, 1, 5, 1, ACT.NONE)),
    Case("depthwise_mult2_s2", lambda: _depthwise(5, 2, 3, 2, ACT.NONE)),
    Case("conv_one_pixel", lambda: _conv_1x1_pixel(64, 20)),
]


# -- running a case ------------------------------------------------------------------------


@dataclass
class Exported:
    package: ModelPackage
    blob_path: Path
    c_ops: COps
    runner: SegmentRunner


@pytest.fixture(scope="module")
def gemm_rounding(fomo96_package: ModelPackage) -> int:
    """What LiteRT's GEMMs round like on this machine, measured on the zoo model."""
    return detect_conv_rounding(fomo96_package)[0]


def _export(case: Case, tmp_path: Path, library: Path, rounding: int) -> Exported:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{case.name}.tflite"
    path.write_bytes(case.build())
    package = ModelPackage.prepare(path, tmp_path / "cache")
    blob = export_blob(package, rounding)
    blob_path = tmp_path / f"{case.name}.bin"
    blob_path.write_bytes(blob)
    return Exported(package, blob_path, COps(library, blob, package), SegmentRunner(package))


def _frames(case: Case, package: ModelPackage) -> Iterator[dict[int, np.ndarray]]:
    """Inputs for the graph: random full range, both extremes, and the case's own."""
    specs = package.inputs
    rng = np.random.default_rng(7)
    for k in range(6):
        frame = {}
        for s in specs:
            if s.np_dtype == np.float32:
                frame[s.index] = rng.uniform(-150, 150, s.shape).astype(np.float32) * (
                    0.5 ** (k % 4)
                )
            elif k < 4:
                frame[s.index] = rng.integers(-128, 128, s.shape, dtype=np.int8)
            else:
                frame[s.index] = np.full(s.shape, -128 if k == 4 else 127, np.int8)
        yield frame
    if case.floats is not None:
        (spec,) = specs
        for values in case.floats(spec.shape):
            yield {spec.index: values}


def _litert(runner: SegmentRunner, package: ModelPackage, frame: dict[int, np.ndarray]) -> Any:
    named = {s.name: frame[s.index] for s in package.inputs}
    outs = runner.run_whole_outputs(named)
    return {t.index: outs[t.name] for t in package.outputs}


def _same_bytes(got: dict[int, np.ndarray], want: dict[int, np.ndarray], what: str) -> None:
    for index, value in got.items():
        expected = np.asarray(want[index]).reshape(value.shape)
        if value.tobytes() != expected.tobytes():
            bad = np.flatnonzero(value.view(np.uint8) != expected.view(np.uint8))
            pytest.fail(
                f"{what}: tensor {index}: {bad.size} bytes differ, first at {bad[:8]}: "
                f"C {value.reshape(-1)[:4]} LiteRT {expected.reshape(-1)[:4]}"
            )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_operator_matches_litert(
    case: Case, tmp_path: Path, sciot_ops_build: Path, gemm_rounding: int
) -> None:
    e = _export(case, tmp_path, sciot_ops_build / "libsciot_ops_py.so", gemm_rounding)
    (op,) = e.package.ops
    assert e.c_ops.lib.sct_op_name(e.c_ops._blob, len(e.c_ops.blob), 0).decode() == op.op
    for k, frame in enumerate(_frames(case, e.package)):
        got = e.c_ops.run(0, 1, frame)
        _same_bytes(got, _litert(e.runner, e.package, frame), f"{case.name} frame {k}")


# Which cases cover each operator the exporter encodes (SOFTMAX: test_ops_bitexact.py).
_CASE_PREFIX = {
    "CONV_2D": "conv_",
    "DEPTHWISE_CONV_2D": "depthwise_",
    "FULLY_CONNECTED": "fc_",
    "ADD": "add_",
    "MUL": "mul_",
    "AVERAGE_POOL_2D": "avg_",
    "MAX_POOL_2D": "max_",
    "MEAN": "mean_",
    "RESHAPE": "reshape",
    "CONCATENATION": "concat_",
    "PAD": "pad_",
    "PADV2": "padv2",
    "HARD_SWISH": "hard_swish_",
    "LOGISTIC": "logistic",
    "TANH": "tanh",
    "QUANTIZE": "quantize_",
    "DEQUANTIZE": "dequantize_",
    "SOFTMAX": None,
}


def test_every_implemented_operator_has_cases() -> None:
    from sciot_mqtt.models.export.ops import ENCODERS
    from sciot_mqtt.models.graph import builtin_op_name

    assert {builtin_op_name(code) for code in ENCODERS} == set(_CASE_PREFIX)
    for name, prefix in _CASE_PREFIX.items():
        if prefix is not None:
            assert any(c.name.startswith(prefix) for c in CASES), name


def test_sanitized_driver_runs_every_case(
    tmp_path: Path, sciot_ops_build: Path, sciot_ops_sanitized_build: Path, gemm_rounding: int
) -> None:
    """Every case once more through the ASan + UBSan build: the same bytes, no finding."""
    driver = sciot_ops_sanitized_build / "sciot_ops_run"
    library = sciot_ops_build / "libsciot_ops_py.so"
    for case in CASES:
        e = _export(case, tmp_path / case.name, library, gemm_rounding)
        frames = list(itertools.islice(_frames(case, e.package), 2))
        if case.floats is not None:
            frames.append(next(iter(case.floats(e.package.inputs[0].shape))))
            frames[-1] = {e.package.inputs[0].index: frames[-1]}
        for frame in frames:
            done = subprocess.run(
                [str(driver), str(e.blob_path), "0", "1"],
                input=pack(e.package, 0, frame),
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{case.name}: {done.stderr.decode(errors='replace')}"
            got = unpack(e.package, 1, done.stdout)
            _same_bytes(got, _litert(e.runner, e.package, frame), f"sanitized {case.name}")
