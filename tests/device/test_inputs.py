"""Where a device's inputs come from: folders of arrays and images, and synthetic inputs
for any model's input shape and type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.device.inputs import FolderInputs, SyntheticInputs
from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.models import ModelPackage, SegmentRunner
from tests.zoo.builders import ZooModels


def test_a_folder_of_arrays_feeds_the_model_in_name_order(
    tmp_path: Path, sciot_models: dict[str, ModelPackage]
) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(3)]
    for i, frame in enumerate(frames):
        np.save(tmp_path / f"frame{i}.npy", frame)
    (tmp_path / "notes.txt").write_text("ignored")
    package = sciot_models["fomo96"]
    folder = FolderInputs(tmp_path)
    folder.check([package])
    got = [folder.next_for(package) for _ in range(4)]
    assert np.array_equal(got[0], frames[0]) and np.array_equal(got[3], frames[0])  # loops
    output = SegmentRunner(package).run_whole(package.quantize_input(got[1]))
    assert output.shape == package.output.shape


def test_images_of_any_size_are_resized_for_the_model(
    tmp_path: Path, sciot_models: dict[str, ModelPackage]
) -> None:
    """A 150x200 photo (PNG, Pillow) feeds the 96x96x3 model; so does a 48x48 gray one."""
    from PIL import Image

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(tmp_path / "b.png")
    folder = FolderInputs(tmp_path)
    package = sciot_models["fomo96"]
    folder.check([package])
    color, gray = folder.arrays
    assert color.shape == (150, 200, 3) and gray.shape == (48, 48)
    for image in (color, gray):
        x = package.quantize_input(image)
        assert x.shape == (1, 96, 96, 3) and x.dtype == np.int8
    # A uniform gray picture stays uniform through resizing and channel conversion.
    flat = np.full((40, 70), 200, dtype=np.uint8)
    assert np.unique(package.quantize_input(flat)).tolist() == [200 - 128]


def test_folder_errors_are_clear(tmp_path: Path, sciot_models: dict[str, ModelPackage]) -> None:
    with pytest.raises(ConfigurationError, match="no inputs"):
        FolderInputs(tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        FolderInputs(tmp_path / "missing")
    np.save(tmp_path / "features.npy", np.zeros(490, dtype=np.float32))
    with pytest.raises(ConfigurationError, match=r"features\.npy is no input for model 'fomo96'"):
        FolderInputs(tmp_path).check([sciot_models["fomo96"]])


def test_arrays_of_the_input_shape_feed_a_non_image_model(
    tmp_path: Path, zoo_models: ZooModels
) -> None:
    """The keyword spotter takes 49x10 feature arrays, float (quantized with its scale and
    zero point) or already int8, with or without the batch and channel dimensions."""
    package = zoo_models.package("ds_cnn_kws")
    spec = package.input
    features = np.random.default_rng(2).uniform(-2, 2, (49, 10)).astype(np.float32)
    np.save(tmp_path / "0-float.npy", features)
    np.save(tmp_path / "1-int8.npy", spec.quantize(features)[None, ..., None])
    np.save(tmp_path / "2-float64.npy", features.astype(np.float64)[..., None])
    folder = FolderInputs(tmp_path)
    folder.check([package])
    tensors = [package.quantize_input(folder.next_for(package)) for _ in range(3)]
    for x in tensors:
        assert x.shape == (1, 49, 10, 1) and x.dtype == np.int8
        assert np.array_equal(x, tensors[0])
    # The input's quantization: real value v is stored as round(v / scale) + zero point.
    assert np.array_equal(
        tensors[0].ravel(),
        np.clip(np.round(features / spec.scale) + spec.zero_point, -128, 127).ravel(),
    )
    with pytest.raises(Exception, match="wants shape"):
        package.quantize_input(np.zeros((49, 11), dtype=np.float32))


def test_synthetic_inputs_fit_every_model(zoo_models: ZooModels, zoo_name: str) -> None:
    """Scenes for image models (resized, grayscale when the model is), patterns spanning
    the input's range for the others; seeded, and different from one input to the next."""
    package = zoo_models.package(zoo_name)
    first = SyntheticInputs(seed=3)
    again = SyntheticInputs(seed=3)
    xs = [package.quantize_input(first.next_for(package)) for _ in range(3)]
    assert np.array_equal(xs[0], package.quantize_input(again.next_for(package)))
    for x in xs:
        assert x.shape == package.input.shape and x.dtype == package.input.np_dtype
    assert not np.array_equal(xs[0], xs[1])
    lo, hi = package.input_format.input_range
    real = package.input.dequantize(xs[0])
    # Within the input's range, and not a sliver of it (grey scenes span the least).
    assert real.min() >= lo - 1e-3 and real.max() <= hi + 1e-3
    assert real.max() - real.min() > 0.25 * (hi - lo)
    runner = SegmentRunner(package)
    assert runner.run_whole(xs[0]).shape == package.output.shape
