"""Fixtures for the models tests: the zoo model, a branchy Keras model and the test zoo
(tests/zoo), all prepared.

The branchy model is built, trained for nothing and int8-converted once per session
(TensorFlow is only needed here and in the Keras CLI test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sciot_mqtt.models import ModelPackage, zoo_model_path
from tests.zoo.builders import ZooModels, zoo_names

BRANCHY_SHAPE = (24, 24, 3)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def zoo_package(model_cache: Path) -> ModelPackage:
    return ModelPackage.prepare(zoo_model_path("fomo96"), model_cache)


def _branchy_keras() -> Any:
    import keras

    inp = keras.Input(BRANCHY_SHAPE, name="image")
    stem = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    # Residual block: `stem` stays live across the two ops of the branch.
    x = keras.layers.Conv2D(16, 1, activation="relu", name="expand")(stem)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(8, 1, name="project")(x)
    res = keras.layers.Add(name="res_add")([stem, x])
    # Three branches joined by a concat, one of them reaching back to the input.
    a = keras.layers.Conv2D(4, 1, activation="relu", name="branch_a")(res)
    b = keras.layers.MaxPooling2D(3, strides=1, padding="same", name="branch_b_pool")(res)
    b = keras.layers.Conv2D(4, 3, padding="same", name="branch_b")(b)
    c = keras.layers.Conv2D(4, 1, name="branch_c")(inp)
    cat = keras.layers.Concatenate(name="cat")([a, b, c])
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="down")(cat)
    y2 = keras.layers.Conv2D(8, 1, name="res2_conv")(y)
    y = keras.layers.Add(name="res2_add")([y, y2])
    logits = keras.layers.Conv2D(3, 1, name="logits")(y)
    main = keras.layers.Softmax(name="probs")(logits)
    # A second output, computed from the middle of the graph.
    aux = keras.layers.GlobalAveragePooling2D(name="gap")(res)
    aux = keras.layers.Dense(2, name="aux")(aux)
    return keras.Model(inp, [main, aux], name="branchy")


@pytest.fixture(scope="session")
def branchy_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``keras``: the saved Keras model; ``tflite``: its int8 conversion."""
    pytest.importorskip("tensorflow", reason="TensorFlow builds the branchy test model")
    import keras

    from sciot_mqtt.models.build import convert_keras_to_int8

    keras.utils.set_random_seed(3)
    model = _branchy_keras()
    out = tmp_path_factory.mktemp("branchy")
    keras_path = out / "branchy.keras"
    model.save(keras_path)
    rng = np.random.default_rng(0)
    representative = rng.uniform(0.0, 1.0, (64, *BRANCHY_SHAPE)).astype(np.float32)
    tflite_path = convert_keras_to_int8(
        model, out / "branchy.tflite", representative=representative, num_samples=64
    )
    return {"keras": keras_path, "tflite": tflite_path}


@pytest.fixture(scope="session")
def branchy_package(branchy_files: dict[str, Path], model_cache: Path) -> ModelPackage:
    return ModelPackage.prepare(branchy_files["tflite"], model_cache)


@pytest.fixture(params=["zoo", "branchy", *zoo_names()])
def package(request: pytest.FixtureRequest) -> ModelPackage:
    """fomo96 (the shipped zoo), the branchy model, and each third-party test-zoo model."""
    if request.param in ("zoo", "branchy"):
        pkg: ModelPackage = request.getfixturevalue(f"{request.param}_package")
        return pkg
    zoo: ZooModels = request.getfixturevalue("zoo_models")
    prepared: ModelPackage = zoo.package(request.param)
    return prepared
