"""Camera images and float arrays -> a model's (quantized) input tensor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.manifest import TensorSpec

__all__ = ["DEFAULT_INPUT_RANGE", "quantize_input"]

#: The float range a model's input was trained on, when its sidecar does not say.
DEFAULT_INPUT_RANGE = (0.0, 1.0)


def quantize_input(
    spec: TensorSpec, array: np.ndarray, input_range: Sequence[float] = DEFAULT_INPUT_RANGE
) -> np.ndarray:
    """``array`` as the input tensor ``spec`` (batch dim added).

    ``uint8`` arrays are taken as pixels, mapped linearly onto ``input_range`` (the float
    range the model was trained on) and quantized. Float arrays are taken as that float
    input already. An array already of the input's stored type (e.g. ``int8``) is passed
    through.
    """
    array = np.asarray(array)
    if array.dtype == spec.np_dtype:
        return spec.check(array)
    if array.dtype == np.uint8:
        lo, hi = (float(v) for v in input_range)
        values = array.astype(np.float64) * ((hi - lo) / 255.0) + lo
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
    else:
        raise ModelError(f"cannot quantize a {array.dtype} array for input {spec.dtype}")
    return spec.check(spec.quantize(values))
