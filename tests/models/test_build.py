"""The zoo recipe end to end, shortened: build, train, int8-convert, score, describe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sciot_mqtt.models import ModelPackage, SegmentRunner, SyntheticScenes


@pytest.mark.slow
def test_build_zoo_model_tiny(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="building needs TensorFlow")
    from sciot_mqtt.models.build import build_zoo_model

    path = build_zoo_model(
        tmp_path / "fomo96", epochs=1, seed=1, train_scenes=64, eval_scenes=20, verbose=0
    )
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["model_id"] == "fomo96" and meta["training"]["epochs"] == 1
    assert set(meta["score"]["int8"]) >= {"precision", "recall", "f1", "tp", "fp", "fn"}
    pkg = ModelPackage.prepare(path, tmp_path / "cache")
    assert pkg.model_id == "fomo96"
    assert pkg.input.dtype == pkg.output.dtype == "int8"
    assert pkg.num_ops == meta["num_ops"] == 25
    # A fresh build maps onto the reference layers just like the shipped one.
    assert pkg.reference == "esp32s3-fomo96-layers"
    assert sum(len(op.reference_layers) for op in pkg.ops) == 59
    x = pkg.quantize_input(SyntheticScenes(0).sample()[0])
    runner = SegmentRunner(pkg)
    live, _ = runner.run_head(12, x)
    assert (runner.run_tail(12, live) == runner.run_whole(x)).all()
