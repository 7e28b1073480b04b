"""The synthetic scene generator: deterministic by seed, labels consistent with pixels."""

from __future__ import annotations

import numpy as np
import pytest

from sciot_mqtt.models import CLASS_NAMES, SyntheticScenes


def test_same_seed_same_scenes() -> None:
    a, b = SyntheticScenes(seed=5), SyntheticScenes(seed=5)
    for _ in range(5):
        (img_a, lab_a), (img_b, lab_b) = a.sample(), b.sample()
        assert np.array_equal(img_a, img_b) and np.array_equal(lab_a, lab_b)
    images, labels = SyntheticScenes(seed=5).batch(5)
    first = SyntheticScenes(seed=5)
    for k in range(5):
        img, lab = first.sample()
        assert np.array_equal(images[k], img) and np.array_equal(labels[k], lab)


def test_random_access_matches_sequence() -> None:
    scenes = SyntheticScenes(seed=2)
    sequence = [scenes.sample() for _ in range(4)]
    again = SyntheticScenes(seed=2)
    for i in reversed(range(4)):
        scene = again.scene(i)
        assert np.array_equal(scene.image, sequence[i][0])
        assert np.array_equal(scene.label, sequence[i][1])


def test_different_seeds_differ() -> None:
    a = SyntheticScenes(seed=0).batch(3)[0]
    b = SyntheticScenes(seed=1).batch(3)[0]
    assert not np.array_equal(a, b)


def test_scene_format_and_labels() -> None:
    scenes = SyntheticScenes(seed=3)
    counts = np.zeros(len(CLASS_NAMES) + 1, int)
    for i in range(200):
        scene = scenes.scene(i)
        assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
        assert scene.label.shape == (12, 12) and scene.label.dtype == np.uint8
        # One labelled cell per object, at its centroid, with its class.
        assert np.count_nonzero(scene.label) == len(scene.objects)
        for obj in scene.objects:
            gx, gy = obj.cell(8)
            assert scene.label[gy, gx] == obj.class_id
            # The object is drawn: its centre pixel stands out from the smooth background.
            assert np.ptp(scene.image[int(obj.cy), int(obj.cx)].astype(int)) > 100
        counts += np.bincount(scene.label.ravel(), minlength=len(counts))
    # Both classes appear in roughly equal numbers.
    assert counts[1] > 100 and counts[2] > 100
    assert 0.7 < counts[1] / counts[2] < 1.4


def test_rejects_bad_geometry() -> None:
    with pytest.raises(ValueError):
        SyntheticScenes(size=100, grid=12)
