"""Build, train and int8-convert Keras models. The only module that uses TensorFlow.

TensorFlow is imported inside the functions, so importing this module stays cheap and the
service never pays for it. Nothing is downloaded: the trunk is built with ``weights=None``.

The zoo model is rebuilt with ``build_zoo_model(out_dir, epochs=..., seed=...)`` (or
``sciot-mqtt models build``). CPU training is seeded and run with TensorFlow's op
determinism on, but float kernels may still differ between machines and TF versions, so a
rebuild elsewhere gives a model of the same quality, not necessarily the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.models.dataset import CLASS_NAMES, GENERATOR_VERSION, SyntheticScenes
from sciot_mqtt.models.errors import ModelError

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_SEED",
    "FOMO_CUT_LAYER",
    "RepresentativeData",
    "build_fomo_keras",
    "build_zoo_model",
    "convert_keras_to_int8",
    "load_keras_model",
    "train_fomo",
    "with_batch_of_one",
]

DEFAULT_EPOCHS = 10
DEFAULT_SEED = 0
DEFAULT_TRAIN_SCENES = 3000
FOMO_CUT_LAYER = "block_6_expand_relu"
ZOO_MODEL_ID = "fomo96"

#: Samples for calibration: an array ``(N, *input_shape)``, an iterable of samples (each
#: an array, or a list of arrays for multi-input models), or a callable returning one.
RepresentativeData = np.ndarray | Iterable[Any] | Callable[[], Iterable[Any]]


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _keras() -> Any:
    _tf()
    import keras

    return keras


def build_fomo_keras(
    num_classes: int = len(CLASS_NAMES),
    *,
    input_shape: tuple[int, int, int] = (96, 96, 3),
    alpha: float = 0.35,
    head_filters: int = 32,
) -> Any:
    """FOMO: MobileNetV2 trunk cut at ``block_6_expand_relu`` + 1x1 head + 1x1 logits + softmax.

    Layer names follow the Keras MobileNetV2 application and the reference profile
    (``head``, ``logits``, ``softmax``), which is what lets the splitter map operators
    onto the measured ESP32-S3 layers. The output has ``num_classes + 1`` channels
    (channel 0 is background) on a grid 1/8 of the input.
    """
    keras = _keras()
    inputs = keras.Input(input_shape, name="input_1")
    trunk = keras.applications.MobileNetV2(
        input_tensor=inputs, alpha=alpha, include_top=False, weights=None
    )
    x = trunk.get_layer(FOMO_CUT_LAYER).output
    x = keras.layers.Conv2D(head_filters, 1, activation="relu", name="head")(x)
    x = keras.layers.Conv2D(num_classes + 1, 1, name="logits")(x)
    outputs = keras.layers.Softmax(name="softmax")(x)
    model = keras.Model(inputs, outputs, name="fomo96")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # The application's 0.999 suits ImageNet-length runs; after a few hundred steps
            # the moving statistics would still be mostly their initial values, and the
            # model would only work in training mode.
            layer.momentum = 0.9
    return model


def _weighted_loss(object_weight: float) -> Callable[[Any, Any], Any]:
    # Objects fill a few of 144 cells; without up-weighting them "all background" is an
    # excellent minimum.
    tf = _tf()
    keras = _keras()

    def fomo_loss(y_true: Any, y_pred: Any) -> Any:
        y_true = tf.cast(y_true, tf.int32)
        ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        weights = tf.where(y_true > 0, object_weight, 1.0)
        return tf.reduce_mean(ce * weights)

    return fomo_loss


def _dihedral(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips/quarter turns, applied to image and centroid map alike.

    Exact for labels because the image side is a multiple of the cell size: pixel p maps
    to size-1-p, and its cell to grid-1-cell.
    """
    out_x = np.empty_like(images)
    out_y = np.empty_like(labels)
    choice = rng.integers(0, 8, len(images))
    for k in range(8):
        idx = np.nonzero(choice == k)[0]
        x, y = images[idx], labels[idx]
        if k & 4:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        x, y = np.rot90(x, k & 3, axes=(1, 2)), np.rot90(y, k & 3, axes=(1, 2))
        out_x[idx], out_y[idx] = x, y
    return out_x, out_y


def train_fomo(
    model: Any,
    *,
    epochs: int,
    seed: int,
    train_scenes: int = DEFAULT_TRAIN_SCENES,
    batch_size: int = 32,
    object_weight: float = 20.0,
    learning_rate: float = 3e-3,
    verbose: int = 1,
) -> dict[str, Any]:
    """Train on ``SyntheticScenes(seed)``; returns a summary for the metadata."""
    tf = _tf()
    keras = _keras()
    keras.utils.set_random_seed(seed)
    scenes = SyntheticScenes(seed, size=model.input_shape[1], grid=model.output_shape[1])
    images, labels = scenes.batch(train_scenes)
    steps = epochs * int(np.ceil(train_scenes / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=_weighted_loss(object_weight))
    rng = np.random.default_rng([seed, 1])
    start = time.perf_counter()
    losses = []
    for epoch in range(epochs):
        x, y = _dihedral(images, labels, rng)
        hist = model.fit(
            tf.constant(x, tf.float32) / 255.0,
            y.astype(np.int32),
            batch_size=batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=True,
            verbose=verbose,
        )
        losses.append(round(float(hist.history["loss"][-1]), 5))
    return {
        "seed": seed,
        "epochs": epochs,
        "train_scenes": train_scenes,
        "batch_size": batch_size,
        "object_weight": object_weight,
        "optimizer": f"Adam, cosine decay from {learning_rate}",
        "augmentation": "random flips and quarter turns",
        "loss_per_epoch": losses,
        "seconds": round(time.perf_counter() - start, 1),
    }


def load_keras_model(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"{path}: expected a .keras or .h5 Keras model")
    keras = _keras()
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for bad files
        raise ModelError(f"cannot load Keras model {path}: {exc}") from exc


def _representative(
    model: Any,
    data: RepresentativeData | None,
    num_samples: int,
    input_range: tuple[float, float],
    seed: int,
) -> Callable[[], Iterator[list[np.ndarray]]]:
    shapes = [tuple(int(d or 1) for d in t.shape[1:]) for t in model.inputs]

    def as_list(sample: Any) -> list[np.ndarray]:
        items = list(sample) if isinstance(sample, (list, tuple)) else [sample]
        if len(items) != len(shapes):
            raise ModelError(
                f"representative sample has {len(items)} arrays, model wants {len(shapes)}"
            )
        out = []
        for arr, shape in zip(items, shapes, strict=True):
            arr = np.asarray(arr, dtype=np.float32)
            if arr.shape == shape:
                arr = arr[None]
            if arr.shape[1:] != shape:
                raise ModelError(f"representative sample shape {arr.shape} != (1, *{shape})")
            out.append(arr[:1])
        return out

    if data is None:
        # No data given: calibrate on uniform noise over the declared input range. It gets
        # the input quantization right and activation ranges roughly so; real samples
        # are better.
        lo, hi = input_range

        def synth() -> Iterator[list[np.ndarray]]:
            rng = np.random.default_rng(seed)
            for _ in range(num_samples):
                yield [rng.uniform(lo, hi, (1, *s)).astype(np.float32) for s in shapes]

        return synth
    if isinstance(data, np.ndarray):
        array = data

        def from_array() -> Iterator[list[np.ndarray]]:
            for k in range(min(num_samples, len(array))):
                yield as_list(array[k])

        return from_array

    def from_iterable() -> Iterator[list[np.ndarray]]:
        source = data() if callable(data) else data
        for k, sample in enumerate(source):
            if k >= num_samples:
                break
            yield as_list(sample)

    return from_iterable


def with_batch_of_one(model: Any) -> Any:
    """``model`` with its batch dimension fixed at 1 (same layers, same weights).

    Keras models take a batch of any size, and the converter then computes every shape
    that depends on it at run time: a Flatten or Reshape becomes SHAPE, STRIDED_SLICE,
    PACK and RESHAPE. A device runs one input at a time, so a fixed batch lets the
    converter fold those into a constant shape.
    """
    keras = _keras()
    if all(t.shape[0] == 1 for t in model.inputs):
        return model
    inputs = [
        keras.Input(batch_shape=(1, *t.shape[1:]), dtype=t.dtype, name=_input_name(t))
        for t in model.inputs
    ]
    try:
        fixed = keras.models.clone_model(
            model, input_tensors=inputs if len(inputs) > 1 else inputs[0]
        )
    except (ValueError, TypeError):
        # Subclassed models cannot be cloned: call them on the fixed-batch inputs instead
        # (the layers, and so the weights, are shared).
        outputs = model(inputs if len(inputs) > 1 else inputs[0])
        return keras.Model(inputs, outputs, name=model.name)
    # A clone has new layers with freshly initialized weights: give it the model's.
    fixed.set_weights(model.get_weights())
    return fixed


def _input_name(tensor: Any) -> str | None:
    name = getattr(tensor, "name", None)
    return str(name).split(":")[0] if name else None


def convert_keras_to_int8(
    model: Any,
    out_path: str | Path,
    *,
    representative: RepresentativeData | None = None,
    num_samples: int = 100,
    input_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    io_dtype: str = "int8",
    batch_of_one: bool = True,
) -> Path:
    """Full-integer int8 TFLite from a Keras model or file, batch dimension fixed at 1.

    Calibrates with ``representative`` (see ``RepresentativeData``), or, if None, with
    ``num_samples`` of uniform noise over ``input_range``. Every operator is int8; the
    model's input and output are int8 too, or with ``io_dtype="float32"`` float32 (the
    graph then starts with QUANTIZE and ends with DEQUANTIZE). ``batch_of_one=False``
    keeps Keras' dynamic batch (see ``with_batch_of_one``).
    """
    tf = _tf()
    io_types = {"int8": tf.int8, "float32": tf.float32}
    if io_dtype not in io_types:
        raise ModelError(f"io_dtype must be one of {sorted(io_types)}, got {io_dtype!r}")
    if isinstance(model, (str, os.PathLike)):
        model = load_keras_model(model)
    if batch_of_one:
        model = with_batch_of_one(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(
        model, representative, num_samples, input_range, seed
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = io_types[io_dtype]
    converter.inference_output_type = io_types[io_dtype]
    # The Keras export path prints every captured variable to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            flatbuffer = converter.convert()
        except Exception as exc:
            raise ModelError(f"int8 conversion failed: {exc}") from exc
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(flatbuffer)
    return out


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            found[dist] = version(dist)
    return found


def build_zoo_model(
    out_dir: str | Path,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = DEFAULT_SEED,
    train_scenes: int = DEFAULT_TRAIN_SCENES,
    eval_scenes: int = 500,
    verbose: int = 1,
) -> Path:
    """Build, train, quantize and score the ``fomo96`` zoo model into ``out_dir``.

    Writes ``model.tflite`` (int8) and ``model.json`` (ids, classes, input/output spec,
    scores, training recipe, versions); returns the ``.tflite`` path.
    """
    # Deferred so that these (TF-free) modules are not part of the import of build.py.
    from sciot_mqtt.models.cache import file_sha256
    from sciot_mqtt.models.evaluate import EVAL_SEED, evaluate_package, score_outputs
    from sciot_mqtt.models.package import ModelPackage

    if seed == EVAL_SEED:
        raise ModelError(f"seed {seed} is the held-out evaluation seed; pick another")
    tf = _tf()
    tf.config.experimental.enable_op_determinism()
    # Before the model exists: layer construction draws the initial weights.
    _keras().utils.set_random_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A stale sidecar would be read back while the new model is being scored.
    (out / "model.json").unlink(missing_ok=True)
    model = build_fomo_keras()
    training = train_fomo(
        model, epochs=epochs, seed=seed, train_scenes=train_scenes, verbose=verbose
    )

    held_out = SyntheticScenes(EVAL_SEED)
    images, labels = held_out.batch(eval_scenes)
    float_out = model.predict(images.astype(np.float32) / 255.0, batch_size=64, verbose=0)
    float_score = score_outputs(list(float_out), list(labels))

    calibration = SyntheticScenes(seed).batch(200, start=train_scenes)[0]
    tflite_path = out / "model.tflite"
    convert_keras_to_int8(
        model,
        tflite_path,
        representative=calibration.astype(np.float32) / 255.0,
        num_samples=200,
        # The shipped fomo96 was converted with Keras' dynamic batch (its graph has no
        # operator that depends on the batch); kept so that a rebuild gives its bytes.
        batch_of_one=False,
    )
    # Score the deployed int8 artefact through the same runtime the service uses.
    with _scratch_cache() as cache:
        package = ModelPackage.prepare(tflite_path, cache_dir=cache, model_id=ZOO_MODEL_ID)
        int8_score = evaluate_package(package, scenes=eval_scenes)
        num_ops = package.num_ops
        inp, outp = package.input, package.output

    evaluation = {
        "scenes": eval_scenes,
        "dataset": f"SyntheticScenes(seed={EVAL_SEED}) scenes 0..{eval_scenes - 1}",
        "threshold": 0.5,
        "rule": "8-connected same-class cells merged; greedy match to a same-class "
        "centroid within 1 cell (Chebyshev)",
    }
    metadata = {
        "model_id": ZOO_MODEL_ID,
        "architecture": "FOMO 96x96: MobileNetV2 alpha 0.35 (weights=None) cut at "
        f"{FOMO_CUT_LAYER}, 1x1 conv 'head' (32, relu), 1x1 conv 'logits' "
        f"({len(CLASS_NAMES) + 1}), softmax",
        "classes": list(CLASS_NAMES),
        "labels": ["background", *CLASS_NAMES],
        "input": {
            "shape": list(inp.shape),
            "dtype": inp.dtype,
            "scale": inp.scale,
            "zero_point": inp.zero_point,
            "pixels": "RGB888, uint8 p -> p/255",
        },
        "input_range": [0.0, 1.0],
        "output": {
            "shape": list(outp.shape),
            "dtype": outp.dtype,
            "scale": outp.scale,
            "zero_point": outp.zero_point,
            "meaning": "per cell softmax over labels; channel 0 background",
        },
        "num_ops": num_ops,
        "bytes": tflite_path.stat().st_size,
        "sha256": file_sha256(tflite_path),
        "score": {"int8": int8_score.to_dict(), "float": float_score.to_dict(), **evaluation},
        "training": {
            **training,
            "dataset": f"SyntheticScenes(seed={seed}) scenes 0..{train_scenes - 1}, "
            f"generator v{GENERATOR_VERSION}",
        },
        "calibration": f"200 SyntheticScenes(seed={seed}) scenes after the training ones",
        "built_by": f"sciot_mqtt.models.build.build_zoo_model(out_dir, epochs={epochs}, "
        f"seed={seed})",
        "versions": _versions(),
    }
    (out / "model.json").write_text(json.dumps(metadata, indent=1) + "\n")
    return tflite_path


@contextlib.contextmanager
def _scratch_cache() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sciot-build-") as tmp:
        yield Path(tmp)
