"""FOMO decoding and the centroid scoring rule, on hand-made outputs."""

from __future__ import annotations

import numpy as np
import pytest

from sciot_mqtt.models import (
    Detection,
    TensorSpec,
    decode_detections,
    label_centroids,
    match_centroids,
)

SPEC = TensorSpec("out", (1, 12, 12, 3), "int8", 1 / 256, -128, 432, 0)


def _output(cells: dict[tuple[int, int], tuple[int, float]]) -> np.ndarray:
    """int8 FOMO output: background everywhere except ``(x, y) -> (class, probability)``."""
    probs = np.zeros((12, 12, 3))
    probs[..., 0] = 1.0
    for (x, y), (cls, p) in cells.items():
        probs[y, x] = 0.0
        probs[y, x, cls] = p
        probs[y, x, 0] = 1.0 - p
    return SPEC.quantize(probs[None])


def test_decode_reports_classes_above_threshold_best_first() -> None:
    out = _output({(3, 4): (1, 0.9), (10, 2): (2, 0.7), (0, 0): (2, 0.3)})
    dets = decode_detections(out, spec=SPEC, threshold=0.5)
    assert [(d.class_id, d.x, d.y) for d in dets] == [(1, 3, 4), (2, 10, 2)]
    assert dets[0].score == pytest.approx(0.9, abs=1 / 256)
    assert all(isinstance(d.score, float) for d in dets)
    low = decode_detections(out, scale=SPEC.scale, zero_point=SPEC.zero_point, threshold=0.2)
    assert len(low) == 3
    # Background is never a detection, however confident.
    assert decode_detections(_output({}), spec=SPEC, threshold=0.0) != []
    assert all(d.class_id != 0 for d in decode_detections(_output({}), spec=SPEC, threshold=0.0))


def test_decode_accepts_float_and_unbatched() -> None:
    out = _output({(5, 5): (2, 0.8)})
    floats = SPEC.dequantize(out)[0]
    assert decode_detections(floats, threshold=0.5) == decode_detections(out, spec=SPEC)
    with pytest.raises(ValueError):
        decode_detections(out)  # int8 without its quantization


def test_merge_joins_adjacent_cells_of_one_class() -> None:
    out = _output({(3, 3): (1, 0.9), (4, 3): (1, 0.6), (4, 4): (1, 0.7), (5, 3): (2, 0.8)})
    merged = decode_detections(out, spec=SPEC, merge=True)
    assert sorted((d.class_id, d.x, d.y) for d in merged) == [(1, 3, 3), (2, 5, 3)]


def test_match_centroids_counts() -> None:
    label = np.zeros((12, 12), np.uint8)
    label[2, 3] = 1
    label[8, 8] = 2
    truth = label_centroids(label)
    assert sorted(truth) == [(1, 3, 2), (2, 8, 8)]
    dets = [
        Detection(1, 4, 3, 0.9),  # one cell off: still the object
        Detection(1, 3, 2, 0.8),  # duplicate of an already matched object
        Detection(1, 8, 8, 0.7),  # right place, wrong class
    ]
    score = match_centroids(dets, truth)
    assert (score.tp, score.fp, score.fn) == (1, 2, 1)
    assert score.precision == pytest.approx(1 / 3) and score.recall == pytest.approx(1 / 2)
    assert match_centroids([], []).f1 == 1.0
