"""A small int8 image classifier that uses every operator of the firmware's operator set.

Not a FOMO grid: a float32 interface (QUANTIZE, DEQUANTIZE), PAD, CONV_2D, DEPTHWISE_CONV_2D,
HARD_SWISH, MAX_POOL_2D, AVERAGE_POOL_2D, a squeeze-and-excite block (MEAN, FULLY_CONNECTED,
LOGISTIC, MUL), CONCATENATION, ADD, RESHAPE and a SOFTMAX over 4 classes. Random (seeded)
weights: what the firmware tests need is the operators, shapes and quantization. Built with
TensorFlow (the `build` extra) in a few seconds after its import:

    python -m tests.firmware.tiny_classifier OUT.tflite     # .ci/run's ESP-IDF compile check
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

OPERATORS = frozenset(
    {
        "QUANTIZE",
        "PAD",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "HARD_SWISH",
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "MEAN",
        "FULLY_CONNECTED",
        "LOGISTIC",
        "MUL",
        "CONCATENATION",
        "ADD",
        "RESHAPE",
        "SOFTMAX",
        "DEQUANTIZE",
    }
)
INPUT_SHAPE = (32, 32, 3)


def build_tiny_classifier(out: Path, seed: int = 0) -> Path:
    """Write the int8 ``.tflite`` (float32 input and output) to ``out``."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inp = keras.Input(INPUT_SHAPE, batch_size=1, name="image")
    x = layers.ZeroPadding2D(1)(inp)
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Activation("hard_swish")(x)
    a = layers.MaxPooling2D(2)(x)
    b = layers.AveragePooling2D(2)(x)
    x = layers.Concatenate()([a, b])
    squeeze = layers.GlobalAveragePooling2D(keepdims=True)(x)
    squeeze = layers.Dense(4, activation="relu")(squeeze)
    squeeze = layers.Dense(16, activation="sigmoid")(squeeze)
    x = layers.Add()([x, layers.Multiply()([x, squeeze])])
    x = layers.Flatten()(x)
    out_layer = layers.Dense(4, activation="softmax", name="classes")(x)
    model = keras.Model(inp, out_layer, name="tiny_classifier")

    def representative() -> Iterator[list[np.ndarray]]:
        rng = np.random.default_rng(seed)
        for _ in range(32):
            yield [rng.uniform(0.0, 1.0, (1, *INPUT_SHAPE)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    with contextlib.redirect_stdout(io.StringIO()):  # the Keras export prints its variables
        flatbuffer = converter.convert()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(flatbuffer)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m {__spec__.name if __spec__ else __name__} OUT.tflite")
    print(build_tiny_classifier(Path(sys.argv[1])))
