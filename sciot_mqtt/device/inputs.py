"""Where a device's images come from: the synthetic scene generator, or a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sciot_mqtt.errors import ConfigurationError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".npy"}


def synthetic_images(seed: int = 0) -> Iterator[np.ndarray]:
    """Endless 96x96 RGB scenes of the kind the zoo model was trained on."""
    from sciot_mqtt.models import SyntheticScenes

    scenes = SyntheticScenes(seed=seed)
    while True:
        image, _ = scenes.sample()
        yield image


def folder_images(folder: Path, size: tuple[int, int] = (96, 96)) -> Iterator[np.ndarray]:
    """The folder's images in name order, resized to `size`, repeated forever.

    `.npy` files must hold uint8 HxWx3 arrays of that size; other formats need Pillow.
    """
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigurationError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    loaded = [_load(path, size) for path in files]
    while True:
        yield from loaded


def _load(path: Path, size: tuple[int, int]) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        array = np.load(path)
        if array.dtype != np.uint8 or array.shape != (*size, 3):
            raise ConfigurationError(f"{path}: want a uint8 array of shape {(*size, 3)}")
        return np.asarray(array, dtype=np.uint8)
    try:
        from PIL import Image
    except ImportError as exc:
        raise ConfigurationError(
            f"{path}: reading {path.suffix} files needs Pillow (pip install pillow), "
            "or use .npy arrays"
        ) from exc
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize(size[::-1]), dtype=np.uint8)
