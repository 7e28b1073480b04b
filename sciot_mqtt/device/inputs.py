"""Where a device's inputs come from: a synthetic generator, or a folder of files.

Either source gives, for the model about to run, an array ``ModelPackage.quantize_input``
takes: an image of any size (resized and converted to the model's input), or an array of
the model's input shape (quantized with its scale and zero point). See
``models.inputs`` for the rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.inputs import synthetic_inputs

if TYPE_CHECKING:
    from sciot_mqtt.models import ModelPackage

__all__ = [
    "INPUT_SUFFIXES",
    "FolderInputs",
    "InputSource",
    "SyntheticInputs",
    "synthetic_images",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
INPUT_SUFFIXES = IMAGE_SUFFIXES | {".npy"}


class InputSource(Protocol):
    def next_for(self, package: ModelPackage) -> np.ndarray:
        """The next input for ``package``'s model."""
        ...


class SyntheticInputs:
    """Seeded synthetic inputs for any model (``models.inputs.synthetic_inputs``): scenes
    for image models, structured patterns over the input's range for the others."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._streams: dict[str, Iterator[np.ndarray]] = {}

    def next_for(self, package: ModelPackage) -> np.ndarray:
        stream = self._streams.get(package.sha256)
        if stream is None:
            stream = synthetic_inputs(package.input_format, self.seed)
            self._streams[package.sha256] = stream
        return next(stream)


class FolderInputs:
    """A folder's ``.npy`` arrays and images (PNG, JPEG, BMP; Pillow), in name order,
    repeated forever. Each is read once."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfigurationError(f"input folder {folder} does not exist")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in INPUT_SUFFIXES)
        if not files:
            raise ConfigurationError(f"no inputs ({', '.join(sorted(INPUT_SUFFIXES))}) in {folder}")
        self.files = files
        self.arrays = [_load(path) for path in files]
        self._turn = 0

    def check(self, packages: Sequence[ModelPackage]) -> None:
        """``ConfigurationError`` naming the first file a model cannot take."""
        for package in packages:
            for path, array in zip(self.files, self.arrays, strict=True):
                try:
                    package.quantize_input(array)
                except ModelError as exc:
                    raise ConfigurationError(
                        f"{path} is no input for model {package.model_id!r} "
                        f"({package.input_format.describe()}): {exc}"
                    ) from exc

    def next_for(self, package: ModelPackage) -> np.ndarray:
        array = self.arrays[self._turn % len(self.arrays)]
        self._turn += 1
        return array


def _load(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            return np.asarray(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read {path} as a .npy array: {exc}") from exc
    try:
        from PIL import Image
    except ImportError as exc:
        raise ConfigurationError(
            f"{path}: reading {path.suffix} files needs Pillow (pip install sciot-mqtt[images]), "
            "or use .npy arrays"
        ) from exc
    try:
        with Image.open(path) as image:
            mode = "L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            return np.asarray(image.convert(mode), dtype=np.uint8)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path} as an image: {exc}") from exc


def synthetic_images(seed: int = 0) -> Iterator[np.ndarray]:
    """Endless 96x96 RGB scenes of the kind the zoo model was trained on."""
    from sciot_mqtt.models import SyntheticScenes

    scenes = SyntheticScenes(seed=seed)
    while True:
        image, _ = scenes.sample()
        yield image
