"""A model's input: what it is (an image or a plain tensor), arrays to it, synthetic ones.

``InputFormat`` says how to feed a model's (first) input. From the sidecar (``model.json``)
it takes ``input_range``, the float range the model was trained on, and ``input_kind``
(``image`` or ``tensor``); without them the kind is inferred (``(1, H, W, C)`` with C 1 or 3
and H, W at least 16 is an image) and the range is what the input's quantization can
represent (the calibration data's range), or ``[0, 1]`` for a float input.

``to_tensor`` turns an array into the input tensor:

- an image model given ``uint8`` pixels of any size (``H x W``, ``H x W x 1|3|4``) resizes
  them (bilinear) to the model's H, W, converts them to its channels (luma for grayscale)
  and maps 0..255 linearly onto the input range;
- an array already of the input's stored type and size passes through;
- any other array (float, or integers) holds real values: quantized with the input's scale
  and zero point (an image model's float arrays are resized first when needed).

``synthetic_inputs`` generates inputs for any model: for images, the synthetic scenes the
zoo model was trained on (resized and converted as any image); otherwise seeded smooth
patterns with noise spanning the input range.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.manifest import TensorSpec

__all__ = [
    "DEFAULT_INPUT_RANGE",
    "InputFormat",
    "InputKind",
    "quantize_input",
    "resize_image",
    "synthetic_inputs",
]

#: The float range of a float input whose sidecar does not say.
DEFAULT_INPUT_RANGE = (0.0, 1.0)
#: The smallest height and width an input is taken to be an image at.
_MIN_IMAGE_SIDE = 16
_LUMA = np.array([0.299, 0.587, 0.114])


class InputKind(StrEnum):
    IMAGE = "image"
    TENSOR = "tensor"


@dataclass(frozen=True, slots=True)
class InputFormat:
    """How to feed one model input (see the module docstring)."""

    spec: TensorSpec
    kind: InputKind
    input_range: tuple[float, float]
    declared_range: bool = False  # the range came from the sidecar

    @classmethod
    def of(cls, spec: TensorSpec, metadata: Mapping[str, Any]) -> InputFormat:
        """The format of input ``spec`` given the model's sidecar; ``ModelError`` if the
        sidecar's input fields are malformed or do not fit the input."""
        where = "model.json"
        kind_value = metadata.get("input_kind")
        if kind_value is None:
            kind = InputKind.IMAGE if _image_shape(spec) else InputKind.TENSOR
        else:
            try:
                kind = InputKind(kind_value)
            except ValueError:
                raise ModelError(
                    f"{where}: input_kind must be image or tensor, got {kind_value!r}"
                ) from None
            if kind == InputKind.IMAGE and _image_shape(spec, any_size=True) is None:
                raise ModelError(
                    f"{where}: input_kind image needs a (1, H, W, 1|3) input, "
                    f"got {list(spec.shape)}"
                )
        declared = metadata.get("input_range")
        if declared is None:
            return cls(spec, kind, _representable_range(spec))
        if (
            not isinstance(declared, list | tuple)
            or len(declared) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in declared)
            or not all(math.isfinite(v) for v in declared)
            or not declared[0] < declared[1]
        ):
            raise ModelError(f"{where}: input_range must be [LO, HI] with LO < HI, got {declared}")
        return cls(spec, kind, (float(declared[0]), float(declared[1])), declared_range=True)

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(H, W, C)`` of an image input; None for a tensor."""
        return _image_shape(self.spec, any_size=True) if self.kind == InputKind.IMAGE else None

    def to_tensor(self, array: np.ndarray) -> np.ndarray:
        """``array`` as the input tensor (batch dimension added); see the module docstring."""
        spec = self.spec
        array = np.asarray(array)
        image = self.image_shape
        if image is not None and array.dtype == np.uint8:
            pixels = _as_image(array, image)
            lo, hi = self.input_range
            return spec.check(spec.quantize(pixels.astype(np.float64) * ((hi - lo) / 255.0) + lo))
        if array.dtype == spec.np_dtype and array.size == spec.nbytes // spec.np_dtype.itemsize:
            return spec.check(array)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ModelError(f"cannot make a {array.dtype} array into input {spec.dtype}")
        values = array.astype(np.float64)
        if image is not None and values.size != int(np.prod(spec.shape)):
            values = _as_image(values, image)
        if values.size != int(np.prod(spec.shape)):
            raise ModelError(
                f"input {spec.name!r} wants shape {list(spec.shape)}, got {list(array.shape)}"
            )
        return spec.check(spec.quantize(values))

    def describe(self) -> str:
        shape = self.image_shape
        what = (
            f"image {shape[0]}x{shape[1]}x{shape[2]}"
            if shape
            else f"tensor {list(self.spec.shape)}"
        )
        lo, hi = self.input_range
        if self.declared_range:
            where = "model.json"
        elif self.spec.scale:
            where = "its quantization"
        else:  # a float input says nothing of its range
            where = "default for a float input; set input_range in model.json"
        return f"{what} {self.spec.dtype}, real range [{lo:g}, {hi:g}] ({where})"


def _image_shape(spec: TensorSpec, *, any_size: bool = False) -> tuple[int, int, int] | None:
    shape = spec.shape
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
        return None
    if not any_size and min(shape[1], shape[2]) < _MIN_IMAGE_SIDE:
        return None
    return shape[1], shape[2], shape[3]


def _representable_range(spec: TensorSpec) -> tuple[float, float]:
    if spec.scale == 0.0 or not np.issubdtype(spec.np_dtype, np.integer):
        return DEFAULT_INPUT_RANGE
    info = np.iinfo(spec.np_dtype)
    return (
        float((info.min - spec.zero_point) * spec.scale),
        float((info.max - spec.zero_point) * spec.scale),
    )


def _as_image(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """An ``H' x W' [x C']`` image (or a batch of one) at ``shape``, as float64."""
    image = np.asarray(array)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ModelError(
            f"expected an image (H x W, or H x W x 1, 3 or 4 channels) for an input of "
            f"{shape[0]}x{shape[1]}x{shape[2]}, got shape {list(array.shape)}"
        )
    values = image.astype(np.float64)
    channels = shape[2]
    if values.shape[2] == 4:
        values = values[..., :3]  # alpha dropped
    if channels == 1 and values.shape[2] == 3:
        values = (values @ _LUMA)[..., None]
    elif channels == 3 and values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return resize_image(values, shape[0], shape[1])


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``H x W x C`` (pixel centres aligned, as Pillow does), float64."""
    src = np.asarray(image, dtype=np.float64)
    h, w = src.shape[:2]
    if (h, w) == (height, width):
        return src
    ys = _sample_positions(h, height)
    xs = _sample_positions(w, width)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    top = src[y0][:, x0] * (1 - wx) + src[y0][:, x1] * wx
    bottom = src[y1][:, x0] * (1 - wx) + src[y1][:, x1] * wx
    out: np.ndarray = top * (1 - wy) + bottom * wy
    return out


def _sample_positions(source: int, target: int) -> np.ndarray:
    positions: np.ndarray = (np.arange(target) + 0.5) * (source / target) - 0.5
    clipped: np.ndarray = np.clip(positions, 0, source - 1)
    return clipped


def quantize_input(
    spec: TensorSpec, array: np.ndarray, input_range: Sequence[float] | None = None
) -> np.ndarray:
    """``array`` as input ``spec`` (see ``InputFormat.to_tensor``), with this input range."""
    metadata = {} if input_range is None else {"input_range": list(input_range)}
    return InputFormat.of(spec, metadata).to_tensor(array)


def synthetic_inputs(fmt: InputFormat, seed: int = 0) -> Iterator[np.ndarray]:
    """Endless seeded inputs for ``fmt``: scenes for images, patterns for tensors.

    Images are ``uint8`` scenes (96x96 RGB, the zoo model's camera; ``to_tensor`` resizes
    and converts them); tensors are float arrays of the input's shape within its range.
    """
    if fmt.image_shape is not None:
        from sciot_mqtt.models.dataset import SyntheticScenes

        scenes = SyntheticScenes(seed=seed)
        while True:
            yield scenes.sample()[0]
    rng = np.random.default_rng([seed, 7])
    shape = fmt.spec.shape
    lo, hi = fmt.input_range
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in shape], indexing="ij")
    while True:
        # A few random low-frequency waves over every axis, plus noise: structure of the
        # kind features (spectrograms, sensor grids) have, spanning the whole range.
        field = sum(
            np.sin(2 * np.pi * sum(rng.uniform(0, 3) * g for g in grids) + rng.uniform(0, 6.3))
            for _ in range(3)
        )
        field = np.asarray(field, dtype=np.float64) + rng.normal(0.0, 0.3, shape)
        span = float(field.max() - field.min()) or 1.0
        unit = (field - field.min()) / span
        yield (lo + unit * (hi - lo)).astype(np.float32)
