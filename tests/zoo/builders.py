"""A zoo of third-party architectures, built at test time: no downloads, random weights.

Each entry is a Keras model nobody in this project designed (Keras' own applications, or a
published architecture written out layer by layer), converted by the product's
``convert_keras_to_int8`` (batch fixed at 1, so no SHAPE/STRIDED_SLICE/PACK) with a seeded
representative dataset. ``build_zoo_entry`` writes ``<name>.tflite`` and, when the entry
has one, its ``<name>.json`` sidecar next to it, which is what ``models split`` reads.

The weights are random (seeded): what the tests need is the architectures' operators,
shapes and quantization, not accuracy. Building one takes a few seconds on 2 cores, after
TensorFlow's import (MobileNets about 10 s).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ZOO", "ZooEntry", "ZooModels", "build_keras", "build_zoo_entry", "zoo_names"]

KWS_LABELS = (
    "_silence_",
    "_unknown_",
    "yes",
    "no",
    "up",
    "down",
    "left",
    "right",
    "on",
    "off",
    "stop",
    "go",
)


@dataclass(frozen=True)
class ZooEntry:
    """How to build one zoo model, and what the tests may expect of it."""

    name: str
    what: str
    keras: Callable[[], Any]  # builds the Keras model (seeded by the caller)
    input_range: tuple[float, float]  # float range of the input; calibration draws from it
    io_dtype: str = "int8"  # "float32": QUANTIZE/DEQUANTIZE at the ends
    sidecar: dict[str, Any] = field(default_factory=dict)  # model.json, if any
    task: str = "raw"  # what the product should make of its output
    expected_ops: frozenset[str] = frozenset()  # operators the conversion must produce


def _keras() -> Any:
    import keras

    return keras


def mobilenet_v1_person() -> Any:
    """Keras' MobileNet v1, alpha 0.25, 96x96 grayscale, 2 classes: the person-detection
    shape of the TinyML benchmarks (Visual Wake Words)."""
    keras = _keras()
    return keras.applications.MobileNet(
        input_shape=(96, 96, 1), alpha=0.25, weights=None, classes=2, dropout=0.0
    )


def ds_cnn_kws() -> Any:
    """DS-CNN keyword spotter (Zhang et al., "Hello Edge"; MLPerf Tiny's KWS model) on
    49x10 MFCC features, 12 classes."""
    keras = _keras()
    layers = keras.layers
    inp = keras.Input((49, 10, 1), name="mfcc")
    x = layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for _ in range(4):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(64, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.AveragePooling2D(pool_size=(25, 5))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(len(KWS_LABELS), activation="softmax")(x)
    return keras.Model(inp, out, name="ds_cnn")


def mobilenet_v3_small() -> Any:
    """Keras' MobileNetV3-Small (alpha 0.25, 96x96 RGB, 5 classes): hard-swish, squeeze and
    excite (MEAN, hard-sigmoid, MUL), residual ADDs."""
    keras = _keras()
    return keras.applications.MobileNetV3Small(
        input_shape=(96, 96, 3),
        alpha=0.25,
        weights=None,
        classes=5,
        dropout_rate=0.0,
        include_preprocessing=False,
    )


def two_branch_float() -> Any:
    """A small sensor model with two branches joined by a concat, reshapes and dense
    layers, and a float32 interface (a regression head: no softmax)."""
    keras = _keras()
    layers = keras.layers
    inp = keras.Input((8, 8, 2), name="grid")
    a = layers.Conv2D(8, 3, activation="relu", name="conv_branch")(inp)
    a = layers.Flatten(name="flatten_conv")(a)
    a = layers.Dense(16, activation="relu", name="dense_conv")(a)
    b = layers.Reshape((128,), name="flatten_raw")(inp)
    b = layers.Dense(16, activation="relu", name="dense_raw")(b)
    x = layers.Concatenate(name="join")([a, b])
    x = layers.Reshape((4, 8), name="as_rows")(x)
    x = layers.Dense(4, activation="relu", name="per_row")(x)
    x = layers.Flatten(name="rows_flat")(x)
    out = layers.Dense(3, name="regression")(x)
    return keras.Model(inp, out, name="two_branch")


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            name="mobilenet_v1_person",
            what=mobilenet_v1_person.__doc__ or "",
            keras=mobilenet_v1_person,
            input_range=(-1.0, 1.0),
            sidecar={
                "model_id": "mobilenet_v1_person",
                "task": "classification",
                "labels": ["no person", "person"],
                "input_range": [-1.0, 1.0],
                "top_k": 2,
            },
            task="classification",
            expected_ops=frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "RESHAPE", "SOFTMAX"}),
        ),
        ZooEntry(
            name="ds_cnn_kws",
            what=ds_cnn_kws.__doc__ or "",
            keras=ds_cnn_kws,
            input_range=(-4.0, 4.0),
            sidecar={
                "model_id": "ds_cnn_kws",
                "task": "classification",
                "labels": list(KWS_LABELS),
                "input_kind": "tensor",
            },
            task="classification",
            expected_ops=frozenset(
                {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"}
            ),
        ),
        ZooEntry(
            name="mobilenet_v3_small",
            what=mobilenet_v3_small.__doc__ or "",
            keras=mobilenet_v3_small,
            input_range=(0.0, 255.0),
            # No sidecar: the task is inferred (a (1, N) output of a SOFTMAX).
            task="classification",
            expected_ops=frozenset(
                {"CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "MUL", "MEAN", "ADD", "SOFTMAX"}
            ),
        ),
        ZooEntry(
            name="two_branch_float",
            what=two_branch_float.__doc__ or "",
            keras=two_branch_float,
            input_range=(0.0, 1.0),
            io_dtype="float32",
            task="raw",
            expected_ops=frozenset(
                {"QUANTIZE", "DEQUANTIZE", "CONCATENATION", "RESHAPE", "FULLY_CONNECTED"}
            ),
        ),
    )
}


def zoo_names() -> list[str]:
    return list(ZOO)


def representative(entry: ZooEntry, shape: tuple[int, ...], n: int = 32) -> np.ndarray:
    """Seeded calibration samples over the entry's input range, shape ``(n, *shape)``."""
    lo, hi = entry.input_range
    rng = np.random.default_rng(1234)
    return rng.uniform(lo, hi, (n, *shape)).astype(np.float32)


def build_keras(name: str, seed: int = 0) -> Any:
    """The entry's Keras model: seeded random weights, batch norm statistics fitted.

    With the initial moving statistics (mean 0, variance 1) activations of random layers
    drift until the logits differ by less than one int8 step and every input gives the
    same output. One pass in training mode over the calibration samples, with momentum
    0, sets each batch norm to the statistics it really sees: outputs then depend on the
    input, which is what the tests compare.
    """
    keras = _keras()
    keras.utils.set_random_seed(seed)
    entry = ZOO[name]
    model = entry.keras()
    norms = [
        la for la in model._flatten_layers() if isinstance(la, keras.layers.BatchNormalization)
    ]
    if norms:
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        samples = representative(entry, shape)
        momentum = [la.momentum for la in norms]
        for layer in norms:
            layer.momentum = 0.0
        model(samples, training=True)
        for layer, m in zip(norms, momentum, strict=True):
            layer.momentum = m
    return model


def build_zoo_entry(name: str, out_dir: Path, *, seed: int = 0) -> Path:
    """Build, convert and write ``<out_dir>/<name>.tflite`` (+ ``.json`` sidecar)."""
    from sciot_mqtt.models.build import convert_keras_to_int8

    entry = ZOO[name]
    model = build_keras(name, seed)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = convert_keras_to_int8(
        model,
        out_dir / f"{name}.tflite",
        representative=representative(entry, shape),
        num_samples=32,
        io_dtype=entry.io_dtype,
    )
    if entry.sidecar:
        path.with_suffix(".json").write_text(json.dumps(entry.sidecar, indent=1) + "\n")
    return path


class ZooModels:
    """The zoo built into ``root`` on first use, each model once; prepared packages too."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tflite: dict[str, Path] = {}
        self._keras: dict[str, Path] = {}
        self._packages: dict[str, Any] = {}

    def tflite(self, name: str) -> Path:
        """``<name>.tflite`` (int8, batch 1), with its sidecar when the entry has one."""
        if name not in self._tflite:
            self._tflite[name] = build_zoo_entry(name, self.root / "tflite")
        return self._tflite[name]

    def keras_file(self, name: str) -> Path:
        """The same model saved as ``<name>.keras`` (same seed, so the same weights)."""
        if name not in self._keras:
            path = self.root / "keras" / f"{name}.keras"
            path.parent.mkdir(parents=True, exist_ok=True)
            build_keras(name).save(path)
            self._keras[name] = path
        return self._keras[name]

    def package(self, name: str) -> Any:
        """The model prepared for splitting (a ``ModelPackage``) in the zoo's own cache."""
        from sciot_mqtt.models import ModelPackage

        if name not in self._packages:
            self._packages[name] = ModelPackage.prepare(self.tflite(name), self.cache)
        return self._packages[name]

    @property
    def cache(self) -> Path:
        return self.root / "cache"
