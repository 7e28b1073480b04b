"""Estimated operator times on a reference chip, from each operator's work.

Only a model whose Keras layers were measured on the chip (fomo96 on the ESP32-S3, see
``models.reference``) has measured per-operator times. For any other model each operator's
time is **estimated** from its work, with rates fitted by least squares on the measured
model's operators:

- ``mac`` operators (CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, BATCH_MATMUL):
  ``t = a * MACs + b * output elements`` (the measured layers include their batch norm and
  activation, which cost per output element);
- ``window`` operators (DEPTHWISE_CONV_2D, pooling, MEAN): ``t = a * MACs + b * output
  elements + c * input elements``, MACs being the window reads;
- every other operator (ADD, MUL, SOFTMAX, HARD_SWISH, RESHAPE, CONCATENATION, QUANTIZE,
  ...): ``t = r * (input + output elements)``, with ``r`` fitted per operator type when the
  measured model has that type, else on all of its element-wise operators together.

A rate that comes out negative is dropped and the rest refitted. The fit is weighted by
``1 / measured`` so that small operators count as much as big ones; ``FitQuality`` says how
well it reproduces the measured model (``fit_quality``). The estimate is in the measured
model's units (float32 TFLite Micro on the ESP32-S3): the compute profile's scale factor
applies to it as to measured times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import numpy as np

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.graph import TfliteGraph
from sciot_mqtt.models.manifest import OpInfo

__all__ = [
    "CostClass",
    "FitQuality",
    "OpWork",
    "Rates",
    "cost_class",
    "estimate_ms",
    "fit_rates",
    "op_work",
    "reference_rates",
]

_MAC_OPS = frozenset({"CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"})
_WINDOW_OPS = frozenset(
    {"DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "MEAN", "SUM"}
)


class CostClass(StrEnum):
    MAC = "mac"
    WINDOW = "window"
    ELEMENTWISE = "elementwise"


def cost_class(op: str) -> CostClass:
    if op in _MAC_OPS:
        return CostClass.MAC
    if op in _WINDOW_OPS:
        return CostClass.WINDOW
    return CostClass.ELEMENTWISE


@dataclass(frozen=True, slots=True)
class OpWork:
    macs: int
    elements_in: int
    elements_out: int


def op_work(graph: TfliteGraph, index: int) -> OpWork:
    """Operator ``index``'s MACs and the activation elements it reads and writes."""
    ins = graph.op_inputs[index]
    activations = [t for t in ins if not graph.is_constant(t)]
    elements_in = sum(_elements(graph, t) for t in activations)
    elements_out = sum(_elements(graph, t) for t in graph.op_outputs[index])
    op = graph.op_names[index]
    macs = 0
    shape = graph.tensor
    if op == "CONV_2D" and len(ins) >= 2:
        kernel = shape(ins[1]).shape  # (O, KH, KW, I)
        macs = elements_out * int(np.prod(kernel[1:]))
    elif op == "DEPTHWISE_CONV_2D" and len(ins) >= 2:
        kernel = shape(ins[1]).shape  # (1, KH, KW, C * M)
        macs = elements_out * kernel[1] * kernel[2]
    elif op == "FULLY_CONNECTED" and len(ins) >= 2:
        macs = elements_out * shape(ins[1]).shape[-1]  # weights (O, I)
    elif op == "TRANSPOSE_CONV" and len(ins) >= 3:
        kernel = shape(ins[1]).shape  # (O, KH, KW, I); input is ins[2]
        macs = _elements(graph, ins[2]) * kernel[0] * kernel[1] * kernel[2]
    elif op == "BATCH_MATMUL" and ins:
        macs = elements_out * shape(ins[0]).shape[-1]
    elif op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        options = graph.op_options(index)
        window = int(options.filterHeight * options.filterWidth) if options is not None else 1
        macs = elements_out * window
    elif op in ("MEAN", "SUM") and activations:
        macs = _elements(graph, activations[0])
    return OpWork(int(macs), int(elements_in), int(elements_out))


def _elements(graph: TfliteGraph, tensor: int) -> int:
    return int(np.prod(graph.tensor(tensor).shape, dtype=np.int64))


def _features(op: OpInfo) -> list[float]:
    moved = float(op.elements_in + op.elements_out)
    kind = cost_class(op.op)
    if kind == CostClass.MAC:
        return [float(op.macs), float(op.elements_out)]
    if kind == CostClass.WINDOW:
        return [float(op.macs), float(op.elements_out), float(op.elements_in)]
    return [moved]


@dataclass(frozen=True, slots=True)
class FitQuality:
    """How well the rates reproduce the times they were fitted on."""

    model: str  # the measured model
    device: str
    ops: int
    total_error: float  # relative error of the whole model's time (estimate / measured - 1)
    median_op_error: float  # median of |estimate / measured - 1| over its operators
    worst_op_error: float
    worst_op: str  # "7 DEPTHWISE_CONV_2D"

    def describe(self) -> str:
        return (
            f"rates fitted on {self.model}'s {self.ops} operators measured on {self.device}: "
            f"whole model {self.total_error:+.1%}, per operator median "
            f"{self.median_op_error:.1%}, worst {self.worst_op_error:.1%} ({self.worst_op})"
        )


@dataclass(frozen=True, slots=True)
class Rates:
    """Fitted milliseconds per unit of work, by cost class (and element-wise op type)."""

    device: str
    mac: tuple[float, ...]  # per MAC, per output element
    window: tuple[float, ...]  # per MAC, per output element, per input element
    elementwise: float  # per element moved, any element-wise op type not measured
    per_type: tuple[tuple[str, float], ...]  # per element moved, by measured op type
    quality: FitQuality

    def op_ms(self, op: OpInfo) -> float:
        kind = cost_class(op.op)
        x = _features(op)
        if kind == CostClass.MAC:
            rates: Sequence[float] = self.mac
        elif kind == CostClass.WINDOW:
            rates = self.window
        else:
            rates = (dict(self.per_type).get(op.op, self.elementwise),)
        return float(np.dot(rates, x))


def _nonnegative_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares weighted by ``1/y``; a negative rate is dropped and the rest refitted."""
    weights = 1.0 / np.maximum(y, 1e-9)
    active = list(range(x.shape[1]))
    while True:
        coef = np.zeros(x.shape[1])
        if not active:
            return coef
        sub = x[:, active] * weights[:, None]
        solved, *_ = np.linalg.lstsq(sub, y * weights, rcond=None)
        coef[active] = solved
        negative = [k for k in active if coef[k] < 0]
        if not negative:
            return coef
        active.remove(min(negative, key=lambda k: coef[k]))


def fit_rates(ops: Sequence[OpInfo], *, model: str, device: str) -> Rates:
    """Rates fitted on operators with measured ``reference_ms`` (module docstring)."""
    measured = [op for op in ops if op.reference_ms is not None and op.reference_ms > 0]
    if not measured:
        raise ModelError(f"{model}: no measured operator times to fit rates on")

    def fit(kind: CostClass, size: int) -> tuple[float, ...]:
        rows = [op for op in measured if cost_class(op.op) == kind]
        if not rows:
            raise ModelError(f"{model}: no measured {kind.value} operator to fit rates on")
        x = np.array([_features(op) for op in rows])
        y = np.array([op.reference_ms or 0.0 for op in rows])
        coef = _nonnegative_fit(x, y)
        assert coef.size == size
        return tuple(float(c) for c in coef)

    mac = fit(CostClass.MAC, 2)
    window = fit(CostClass.WINDOW, 3)
    (elementwise,) = fit(CostClass.ELEMENTWISE, 1)
    per_type = []
    for op_type in sorted({op.op for op in measured if cost_class(op.op) == "elementwise"}):
        rows = [op for op in measured if op.op == op_type]
        x = np.array([_features(op) for op in rows])
        y = np.array([op.reference_ms or 0.0 for op in rows])
        per_type.append((op_type, float(_nonnegative_fit(x, y)[0])))
    partial = Rates(device, mac, window, elementwise, tuple(per_type), _NO_QUALITY)
    estimated = np.array([partial.op_ms(op) for op in measured])
    actual = np.array([op.reference_ms or 0.0 for op in measured])
    errors = estimated / actual - 1
    worst = int(np.abs(errors).argmax())
    quality = FitQuality(
        model=model,
        device=device,
        ops=len(measured),
        total_error=float(estimated.sum() / actual.sum() - 1),
        median_op_error=float(np.median(np.abs(errors))),
        worst_op_error=float(abs(errors[worst])),
        worst_op=f"{measured[worst].index} {measured[worst].op}",
    )
    return Rates(device, mac, window, elementwise, tuple(per_type), quality)


_NO_QUALITY = FitQuality("", "", 0, 0.0, 0.0, 0.0, "")


def estimate_ms(ops: Sequence[OpInfo], rates: Rates) -> tuple[float, ...]:
    """Each operator's estimated time on ``rates.device`` (ms)."""
    return tuple(rates.op_ms(op) for op in ops)


@lru_cache(maxsize=4)
def reference_rates(device: str) -> Rates:
    """Rates for ``device`` fitted on the shipped model measured on it (fomo96 for esp32s3).

    ``ModelError`` if no shipped model has per-layer times from ``device``.
    """
    # Deferred: the cutter imports this module (each op's work goes into the manifest).
    from sciot_mqtt.models.cache import file_sha256
    from sciot_mqtt.models.cutter import cut_model
    from sciot_mqtt.models.zoo import zoo_model_ids, zoo_model_path

    for model_id in zoo_model_ids():
        path = zoo_model_path(model_id)
        cut = cut_model(path.read_bytes(), sha256=file_sha256(path), model_id=model_id, metadata={})
        if cut.manifest.reference_device == device:
            return fit_rates(cut.manifest.ops, model=model_id, device=device)
    raise ModelError(f"no shipped model was measured on {device}; nothing to fit rates on")
