"""FOMO output decoding and centroid scoring (numpy only).

A FOMO model outputs, per grid cell, a softmax over ``background + classes``. A detection
is a cell whose best non-background probability passes a threshold; the cell is the
object's centroid on the grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sciot_mqtt.models.manifest import TensorSpec

__all__ = [
    "CentroidScore",
    "Detection",
    "decode_detections",
    "label_centroids",
    "match_centroids",
    "probabilities",
]


@dataclass(frozen=True, slots=True)
class Detection:
    """An object centroid: output channel ``class_id`` (0 is background) at grid cell x, y."""

    class_id: int
    x: int
    y: int
    score: float


def probabilities(
    output: np.ndarray,
    *,
    spec: TensorSpec | None = None,
    scale: float | None = None,
    zero_point: int | None = None,
) -> np.ndarray:
    """``(H, W, C)`` float probabilities from a raw (possibly int8, batched) FOMO output."""
    out = np.asarray(output)
    if out.ndim == 4:
        if out.shape[0] != 1:
            raise ValueError(f"expected a batch of one, got shape {out.shape}")
        out = out[0]
    if out.ndim != 3:
        raise ValueError(f"expected (H, W, C) or (1, H, W, C), got shape {out.shape}")
    if spec is not None:
        scale, zero_point = spec.scale, spec.zero_point
    if np.issubdtype(out.dtype, np.integer):
        if not scale:
            raise ValueError("a quantized output needs its scale and zero point")
        return ((out.astype(np.float32) - (zero_point or 0)) * scale).astype(np.float32)
    return out.astype(np.float32)


def decode_detections(
    output: np.ndarray,
    *,
    threshold: float = 0.5,
    spec: TensorSpec | None = None,
    scale: float | None = None,
    zero_point: int | None = None,
    background: int = 0,
    merge: bool = False,
) -> list[Detection]:
    """Detections above ``threshold``, best first; background never reported.

    Pass the output tensor's quantization as ``spec`` (e.g. ``pkg.output``) or
    ``scale``/``zero_point``. With ``merge``, 8-connected cells of the same class
    (one object spilling over a cell border) become one detection at their best cell.
    """
    probs = probabilities(output, spec=spec, scale=scale, zero_point=zero_point)
    masked = probs.copy()
    masked[..., background] = -1.0
    best = masked.argmax(axis=-1)
    score = masked.max(axis=-1)
    hits = score >= threshold
    dets = [
        Detection(int(best[y, x]), int(x), int(y), float(score[y, x]))
        for y, x in zip(*np.nonzero(hits), strict=True)
    ]
    dets.sort(key=lambda d: (-d.score, d.y, d.x))
    if merge:
        dets = _merge_connected(dets)
    return dets


def _merge_connected(dets: list[Detection]) -> list[Detection]:
    # Highest score first, so each kept detection is the peak of its component.
    taken: set[tuple[int, int]] = set()
    by_cell = {(d.x, d.y): d for d in dets}
    merged = []
    for d in dets:
        if (d.x, d.y) in taken:
            continue
        merged.append(d)
        stack = [d]
        taken.add((d.x, d.y))
        while stack:
            cur = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    nb = by_cell.get((cur.x + dx, cur.y + dy))
                    if nb and nb.class_id == d.class_id and (nb.x, nb.y) not in taken:
                        taken.add((nb.x, nb.y))
                        stack.append(nb)
    return merged


def label_centroids(label: np.ndarray) -> list[tuple[int, int, int]]:
    """Ground-truth ``(class_id, x, y)`` from a centroid label map ``label[y, x]``."""
    ys, xs = np.nonzero(label)
    return [(int(label[y, x]), int(x), int(y)) for y, x in zip(ys, xs, strict=True)]


@dataclass(slots=True)
class CentroidScore:
    """Counts of the FOMO centroid rule, accumulated over scenes."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    scenes: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, other: CentroidScore) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.scenes += other.scenes

    def to_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "scenes": self.scenes,
        }


def match_centroids(
    detections: Sequence[Detection],
    truth: Iterable[tuple[int, int, int]],
    *,
    tolerance: int = 1,
) -> CentroidScore:
    """Score one scene with the FOMO centroid rule.

    Detections (already merged, best first) are matched greedily to unmatched ground-truth
    centroids of the same class at most ``tolerance`` cells away (Chebyshev); a match is
    a true positive, an unmatched detection a false positive, an unmatched object a
    false negative.
    """
    remaining = list(truth)
    score = CentroidScore(scenes=1)
    for d in detections:
        candidates = [
            (max(abs(x - d.x), abs(y - d.y)), k)
            for k, (cls, x, y) in enumerate(remaining)
            if cls == d.class_id and max(abs(x - d.x), abs(y - d.y)) <= tolerance
        ]
        hit = min(candidates)[1] if candidates else None
        if hit is None:
            score.fp += 1
        else:
            score.tp += 1
            remaining.pop(hit)
    score.fn = len(remaining)
    return score
