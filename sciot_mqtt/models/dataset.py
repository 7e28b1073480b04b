"""Seeded synthetic object scenes for FOMO-style centroid detection (numpy only).

The device uses this as its camera stand-in and the zoo build trains on it, so it must not
import TensorFlow and must give the same pixels for the same ``(seed, index)`` everywhere.
Each scene is coloured shapes (class 1 = disc, class 2 = square, rotated) on a textured
background; the label is a ``grid x grid`` map holding the class id of the object whose
centroid falls in that cell (0 = background).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["CLASS_NAMES", "Scene", "SceneObject", "SyntheticScenes"]

#: Object classes; class id ``i + 1`` is ``CLASS_NAMES[i]`` (0 is background).
CLASS_NAMES: tuple[str, ...] = ("disc", "square")

# Bumped whenever the pixels for a given (seed, index) change, so that stored scores and
# training metadata can say which generator produced them.
GENERATOR_VERSION = 1


@dataclass(frozen=True, slots=True)
class SceneObject:
    """One object: class id (1-based), centroid in pixels and its size in pixels."""

    class_id: int
    cx: float
    cy: float
    size: float

    def cell(self, cell_size: int) -> tuple[int, int]:
        """Grid cell ``(gx, gy)`` holding the centroid."""
        return int(self.cx) // cell_size, int(self.cy) // cell_size


@dataclass(frozen=True, slots=True)
class Scene:
    image: np.ndarray  # (size, size, 3) uint8
    label: np.ndarray  # (grid, grid) uint8, label[gy, gx] = class id
    objects: tuple[SceneObject, ...]


class SyntheticScenes:
    """Deterministic scene source: ``scene(i)`` depends only on ``(seed, i)``.

    ``sample()`` walks ``scene(0), scene(1), ...``; random access lets a device pick a frame
    by number and lets train and test sets come from disjoint seeds.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        size: int = 96,
        grid: int = 12,
        max_objects: int = 4,
        min_object: int = 10,
        max_object: int = 22,
    ) -> None:
        if size % grid:
            raise ValueError(f"size {size} is not a multiple of grid {grid}")
        if not 0 < min_object <= max_object < size:
            raise ValueError("need 0 < min_object <= max_object < size")
        self.seed = int(seed)
        self.size = size
        self.grid = grid
        self.cell = size // grid
        self.max_objects = max_objects
        self.min_object = min_object
        self.max_object = max_object
        self.num_classes = len(CLASS_NAMES)
        self._next = 0
        coords = np.arange(size, dtype=np.float32) + 0.5
        self._yy, self._xx = np.meshgrid(coords, coords, indexing="ij")

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Next ``(image uint8 HxWx3, label uint8 grid x grid)`` in the sequence."""
        scene = self.scene(self._next)
        self._next += 1
        return scene.image, scene.label

    def batch(self, n: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Scenes ``start .. start+n-1`` stacked: ``(n,H,W,3) uint8``, ``(n,g,g) uint8``."""
        images = np.empty((n, self.size, self.size, 3), np.uint8)
        labels = np.empty((n, self.grid, self.grid), np.uint8)
        for k in range(n):
            scene = self.scene(start + k)
            images[k] = scene.image
            labels[k] = scene.label
        return images, labels

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.sample()

    def scene(self, index: int) -> Scene:
        rng = np.random.default_rng([self.seed, int(index), GENERATOR_VERSION])
        img = self._background(rng)
        objects = self._place_objects(rng)
        label = np.zeros((self.grid, self.grid), np.uint8)
        for obj in objects:
            self._draw(img, obj, rng)
            gx, gy = obj.cell(self.cell)
            label[gy, gx] = obj.class_id
        out = np.clip(img + rng.normal(0.0, 4.0, img.shape), 0, 255)
        return Scene(image=out.astype(np.uint8), label=label, objects=tuple(objects))

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        yy, xx = self._yy, self._xx
        base = rng.uniform(40, 200, 3)
        # Mostly grey-ish backgrounds so that the saturated objects stay the signal, but with
        # enough colour and structure (gradient, stripes, blotches) that plain thresholding fails.
        base = base.mean() + (base - base.mean()) * 0.4
        angle = rng.uniform(0, np.pi)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / self.size - 0.5
        img = base + ramp[..., None] * rng.uniform(-60, 60, 3)
        freq = rng.uniform(0.08, 0.35)
        stripe_angle = rng.uniform(0, np.pi)
        stripes = np.sin(
            (np.cos(stripe_angle) * xx + np.sin(stripe_angle) * yy) * freq + rng.uniform(0, 6.3)
        )
        img = img + stripes[..., None] * rng.uniform(5, 30)
        for _ in range(int(rng.integers(0, 4))):
            bx, by = rng.uniform(0, self.size, 2)
            radius = rng.uniform(8, 30)
            blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * radius**2))
            img = img + blob[..., None] * rng.uniform(-50, 50, 3)
        out: np.ndarray = img.astype(np.float32)
        return out

    def _place_objects(self, rng: np.random.Generator) -> list[SceneObject]:
        count = int(rng.integers(0, self.max_objects + 1))
        objects: list[SceneObject] = []
        cells: list[tuple[int, int]] = []
        margin = self.max_object / 2
        for _ in range(count * 20):
            if len(objects) == count:
                break
            cx, cy = rng.uniform(margin, self.size - margin, 2)
            cell = (int(cx) // self.cell, int(cy) // self.cell)
            # Centroid cells at least two apart: merged detections never join two objects.
            if any(max(abs(cell[0] - c[0]), abs(cell[1] - c[1])) < 2 for c in cells):
                continue
            # Keep objects apart too, so no centroid sits on a shape that hides another.
            if any(np.hypot(cx - o.cx, cy - o.cy) < self.max_object for o in objects):
                continue
            size = rng.uniform(self.min_object, self.max_object)
            objects.append(SceneObject(int(rng.integers(1, self.num_classes + 1)), cx, cy, size))
            cells.append(cell)
        return objects

    def _draw(self, img: np.ndarray, obj: SceneObject, rng: np.random.Generator) -> None:
        # Saturated colour: one channel high, one low, one anywhere.
        channels = rng.permutation(3)
        colour = np.empty(3)
        colour[channels[0]] = rng.uniform(190, 255)
        colour[channels[1]] = rng.uniform(0, 60)
        colour[channels[2]] = rng.uniform(0, 255)
        half = obj.size / 2
        x0, x1 = int(max(obj.cx - obj.size, 0)), int(min(obj.cx + obj.size + 1, self.size))
        y0, y1 = int(max(obj.cy - obj.size, 0)), int(min(obj.cy + obj.size + 1, self.size))
        dx = self._xx[y0:y1, x0:x1] - obj.cx
        dy = self._yy[y0:y1, x0:x1] - obj.cy
        if obj.class_id == 1:
            dist = np.sqrt(dx**2 + dy**2) - half
        else:
            theta = rng.uniform(0, np.pi / 2)
            u = np.cos(theta) * dx + np.sin(theta) * dy
            v = -np.sin(theta) * dx + np.cos(theta) * dy
            # Same area as the disc of this size, so area alone does not give the class away.
            dist = np.maximum(np.abs(u), np.abs(v)) - half * np.sqrt(np.pi) / 2
        # One pixel of anti-aliasing keeps edges from being a trivially exact cue.
        alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
        patch = img[y0:y1, x0:x1]
        patch[:] = patch * (1 - alpha) + colour * alpha
