"""Score a FOMO model on held-out synthetic scenes (no TensorFlow)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sciot_mqtt.models.dataset import SyntheticScenes
from sciot_mqtt.models.decode import (
    CentroidScore,
    decode_detections,
    label_centroids,
    match_centroids,
)
from sciot_mqtt.models.manifest import TensorSpec
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.runtime import SegmentRunner

__all__ = ["EVAL_SEED", "evaluate_package", "score_outputs"]

#: Seed of the held-out scenes. Training uses small seeds; this one is far from them.
EVAL_SEED = 1_000_000


def score_outputs(
    outputs: Iterable[np.ndarray],
    labels: Iterable[np.ndarray],
    *,
    spec: TensorSpec | None = None,
    threshold: float = 0.5,
    tolerance: int = 1,
) -> CentroidScore:
    """Centroid precision/recall/F1 of FOMO outputs against centroid label maps."""
    total = CentroidScore()
    for out, label in zip(outputs, labels, strict=True):
        dets = decode_detections(out, spec=spec, threshold=threshold, merge=True)
        total.add(match_centroids(dets, label_centroids(label), tolerance=tolerance))
    return total


def evaluate_package(
    package: ModelPackage,
    *,
    scenes: int = 500,
    seed: int = EVAL_SEED,
    threshold: float = 0.5,
    tolerance: int = 1,
    runner: SegmentRunner | None = None,
) -> CentroidScore:
    """Run the deployed (int8) model on ``scenes`` synthetic scenes and score it."""
    runner = runner or SegmentRunner(package)
    source = SyntheticScenes(seed, size=package.input.shape[1], grid=package.output.shape[1])
    outputs, labels = [], []
    for i in range(scenes):
        scene = source.scene(i)
        outputs.append(runner.run_whole(package.quantize_input(scene.image)))
        labels.append(scene.label)
    return score_outputs(
        outputs, labels, spec=package.output, threshold=threshold, tolerance=tolerance
    )
