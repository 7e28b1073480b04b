"""What a model's output means: a FOMO detection grid, class scores, or a plain tensor.

A model's task comes from its sidecar (``model.json``: ``task``, ``labels``, ``threshold``,
``top_k``), else it is inferred from its first output and the operator that produces it
(looking through a final DEQUANTIZE):

- ``detection``: a ``(1, H, W, C)`` grid (``H * W > 1``, ``C >= 2``) made by SOFTMAX, as a
  FOMO model gives: per cell, background (channel 0) and each class.
- ``classification``: ``(1, N)`` (or ``(1, 1, 1, N)``), ``N >= 2``, made by SOFTMAX or
  LOGISTIC: one score per class.
- ``raw``: anything else; summarized by shape and statistics.

``summarize`` turns one output array into an ``OutputSummary``: the detections above the
threshold, the ``top_k`` classes with their scores and labels, or the tensor's shape and
statistics; ``to_dict`` is its JSON form. The device's records and summaries and the swarm's
report all read outputs through here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from sciot_mqtt.models.decode import Detection, decode_detections
from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.manifest import Manifest, TensorSpec

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP_K",
    "ClassScore",
    "OutputSummary",
    "Task",
    "TaskSpec",
    "TensorStats",
    "aggregate_summaries",
    "summarize",
    "task_spec",
]

DEFAULT_THRESHOLD = 0.5
DEFAULT_TOP_K = 3
#: A raw output this small is reported value by value.
_RAW_VALUES_MAX = 16


class Task(StrEnum):
    DETECTION = "detection"
    CLASSIFICATION = "classification"
    RAW = "raw"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """How to read a model's (first) output, and where that came from."""

    task: Task
    labels: tuple[str, ...] = ()  # index = class id (detection: channel, 0 = background)
    threshold: float = DEFAULT_THRESHOLD  # detection: lowest score reported
    top_k: int = DEFAULT_TOP_K  # classification: classes reported, best first
    source: str = "inferred"  # "sidecar", or why it was inferred

    def label(self, class_id: int) -> str:
        """The class's name, or its index as text when the sidecar names none."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.value,
            "labels": list(self.labels),
            "threshold": self.threshold,
            "top_k": self.top_k,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ClassScore:
    class_id: int
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class TensorStats:
    """A raw output in brief (over its real values, dequantized)."""

    shape: tuple[int, ...]
    dtype: str
    minimum: float
    maximum: float
    mean: float
    argmax: int  # flat index of the largest value
    values: tuple[float, ...] = ()  # every value, for outputs of a few values only


@dataclass(frozen=True, slots=True)
class OutputSummary:
    """One output, interpreted: a small JSON-able result (``to_dict``)."""

    task: Task
    detections: tuple[tuple[Detection, str], ...] = ()  # (detection, its label), best first
    classes: tuple[ClassScore, ...] = ()  # best first
    stats: TensorStats | None = None

    @property
    def top(self) -> str:
        """One word for the result: the best class, the number of objects, or ``raw``."""
        if self.task == Task.CLASSIFICATION:
            return self.classes[0].label if self.classes else "-"
        if self.task == Task.DETECTION:
            return f"{len(self.detections)} objects"
        return "raw"

    def brief(self) -> str:
        """A short line for tables and CSV rows."""
        if self.task == Task.CLASSIFICATION:
            return " ".join(f"{c.label}:{c.score:.3f}" for c in self.classes)
        if self.task == Task.DETECTION:
            return " ".join(f"{label}@{d.x},{d.y}:{d.score:.3f}" for d, label in self.detections)
        stats = self.stats
        assert stats is not None
        return f"{stats.dtype}{list(stats.shape)} max {stats.maximum:.4g} at {stats.argmax}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task.value}
        if self.task == Task.CLASSIFICATION:
            out["top"] = [
                {"class_id": c.class_id, "label": c.label, "score": _round(c.score)}
                for c in self.classes
            ]
        elif self.task == Task.DETECTION:
            out["detections"] = [
                {
                    "class_id": d.class_id,
                    "label": label,
                    "x": d.x,
                    "y": d.y,
                    "score": _round(d.score),
                }
                for d, label in self.detections
            ]
        else:
            stats = self.stats
            assert stats is not None
            out.update(
                shape=list(stats.shape),
                dtype=stats.dtype,
                min=_round(stats.minimum),
                max=_round(stats.maximum),
                mean=_round(stats.mean),
                argmax=stats.argmax,
            )
            if stats.values:
                out["values"] = [_round(v) for v in stats.values]
        return out


def _round(value: float) -> float:
    return round(float(value), 6)


# -- the task of a model ------------------------------------------------------------------


def task_spec(manifest: Manifest) -> TaskSpec:
    """The task of ``manifest``'s model: from its sidecar, else inferred (module docstring).

    ``ModelError`` if the sidecar's task fields are malformed or do not fit the output.
    """
    meta = manifest.metadata
    output = manifest.outputs[0]
    producer = _producer(manifest, output.index)
    where = f"model {manifest.model_id!r} (model.json)"
    labels = _labels(meta.get("labels"), where)
    threshold = _number(meta, "threshold", DEFAULT_THRESHOLD, where)
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"{where}: threshold must be within [0, 1], got {threshold}")
    top_k = meta.get("top_k", DEFAULT_TOP_K)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ModelError(f"{where}: top_k must be an integer >= 1, got {top_k!r}")
    declared = meta.get("task")
    if declared is not None:
        try:
            task = Task(declared)
        except ValueError:
            raise ModelError(
                f"{where}: unknown task {declared!r}; use one of {', '.join(t.value for t in Task)}"
            ) from None
        source = "sidecar"
    else:
        task, source = _infer(output, producer)
    classes = _classes(task, output)
    if task != Task.RAW and classes is None:
        raise ModelError(
            f"{where}: task {task.value} needs a {_SHAPES[task]} output, got {list(output.shape)}"
        )
    if labels and classes is not None and len(labels) != classes:
        raise ModelError(
            f"{where}: {len(labels)} labels for {classes} output classes"
            + (" (channel 0, background, included)" if task == Task.DETECTION else "")
        )
    return TaskSpec(task, labels, threshold, top_k, source)


_SHAPES = {
    Task.DETECTION: "(1, H, W, C) grid with C >= 2",
    Task.CLASSIFICATION: "(1, N) or (1, 1, 1, N) with N >= 2",
}


def _producer(manifest: Manifest, tensor: int) -> str | None:
    """The operator producing ``tensor``, looking through DEQUANTIZE and reshapes."""
    by_output = {t: op for op in manifest.ops for t in op.outputs}
    op = by_output.get(tensor)
    while op is not None and op.op in ("DEQUANTIZE", "RESHAPE") and op.inputs:
        op = by_output.get(op.inputs[0])
    return op.op if op else None


def _infer(output: TensorSpec, producer: str | None) -> tuple[Task, str]:
    shape = list(output.shape)
    made_by = f"a {shape} output of {producer or 'no operator'}"
    if producer == "SOFTMAX" and _classes(Task.DETECTION, output) is not None:
        return Task.DETECTION, f"inferred: {made_by} (a FOMO grid)"
    if producer in ("SOFTMAX", "LOGISTIC") and _classes(Task.CLASSIFICATION, output) is not None:
        return Task.CLASSIFICATION, f"inferred: {made_by}"
    return Task.RAW, f"inferred: {made_by}"


def _classes(task: Task, output: TensorSpec) -> int | None:
    """Classes (channels) the output has for ``task``; None if its shape does not fit."""
    shape = output.shape
    if task == Task.DETECTION:
        ok = len(shape) == 4 and shape[0] == 1 and shape[1] * shape[2] > 1 and shape[3] >= 2
        return shape[3] if ok else None
    if task == Task.CLASSIFICATION:
        ok = len(shape) >= 2 and all(d == 1 for d in shape[:-1]) and shape[-1] >= 2
        return shape[-1] if ok else None
    return None


def _labels(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelError(f"{where}: labels must be a list of strings")
    return tuple(value)


def _number(meta: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = meta.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ModelError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


# -- one output ---------------------------------------------------------------------------


def summarize(spec: TaskSpec, output_spec: TensorSpec, output: np.ndarray) -> OutputSummary:
    """``output`` (as the model produced it: quantized or float) as ``spec`` reads it."""
    array = np.asarray(output)
    if spec.task == Task.DETECTION:
        dets = decode_detections(
            array.reshape(output_spec.shape), spec=output_spec, threshold=spec.threshold
        )
        return OutputSummary(spec.task, detections=tuple((d, spec.label(d.class_id)) for d in dets))
    values = output_spec.dequantize(array.reshape(output_spec.shape)).ravel()
    if spec.task == Task.CLASSIFICATION:
        order = np.argsort(-values, kind="stable")[: spec.top_k]
        return OutputSummary(
            spec.task,
            classes=tuple(ClassScore(int(k), spec.label(int(k)), float(values[k])) for k in order),
        )
    stats = TensorStats(
        shape=output_spec.shape,
        dtype=output_spec.dtype,
        minimum=float(values.min()),
        maximum=float(values.max()),
        mean=float(values.mean()),
        argmax=int(values.argmax()),
        values=tuple(float(v) for v in values) if values.size <= _RAW_VALUES_MAX else (),
    )
    return OutputSummary(spec.task, stats=stats)


@dataclass
class _Tally:
    count: int = 0
    top: Counter[str] = field(default_factory=Counter)
    objects: Counter[str] = field(default_factory=Counter)
    shapes: set[tuple[int, ...]] = field(default_factory=set)


def aggregate_summaries(summaries: Iterable[OutputSummary]) -> dict[str, Any]:
    """Many outputs in brief, per task: how often each class came first, how many objects
    of each label were found, or the raw shapes seen."""
    tallies: dict[Task, _Tally] = {}
    for s in summaries:
        tally = tallies.setdefault(s.task, _Tally())
        tally.count += 1
        if s.task == Task.CLASSIFICATION:
            tally.top[s.top] += 1
        elif s.task == Task.DETECTION:
            tally.objects.update(label for _, label in s.detections)
        elif s.stats is not None:
            tally.shapes.add(s.stats.shape)
    out: dict[str, Any] = {}
    for task, tally in tallies.items():
        entry: dict[str, Any] = {"count": tally.count}
        if task == Task.CLASSIFICATION:
            entry["top1"] = dict(tally.top.most_common())
        elif task == Task.DETECTION:
            entry["objects"] = sum(tally.objects.values())
            entry["per_label"] = dict(tally.objects.most_common())
        else:
            entry["shapes"] = [list(s) for s in sorted(tally.shapes)]
        out[task.value] = entry
    return out
