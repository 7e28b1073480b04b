"""Estimated ESP32-S3 times from each operator's work, fitted on fomo96's measurements."""

from __future__ import annotations

import pytest

from sciot_mqtt.device.compute import ComputeEmulator, load_compute_profile
from sciot_mqtt.models import ModelPackage
from sciot_mqtt.models.cost import CostClass, cost_class, estimate_ms, reference_rates
from tests.zoo.builders import ZooModels


def test_the_fit_reproduces_fomo96s_measurements(zoo_package: ModelPackage) -> None:
    """The figures the README quotes: whole model within 2 %, half the operators within
    2 %, none off by more than 25 % (the tiny logits conv)."""
    rates = reference_rates("esp32s3")
    quality = rates.quality
    assert (quality.model, quality.device, quality.ops) == ("fomo96", "esp32s3", 25)
    assert abs(quality.total_error) < 0.02
    assert quality.median_op_error < 0.02
    assert quality.worst_op_error < 0.25
    estimated = estimate_ms(zoo_package.ops, rates)
    measured = [op.reference_ms or 0.0 for op in zoo_package.ops]
    assert sum(estimated) == pytest.approx(sum(measured), rel=0.02)
    # Every rate is a cost: more work never takes less time.
    assert all(r >= 0 for r in (*rates.mac, *rates.window, rates.elementwise))
    assert "whole model" in quality.describe()


def test_work_of_known_operators(zoo_models: ZooModels) -> None:
    """DS-CNN's first conv: a 25x5x64 output, each a 10x4x1 window; its pooling averages
    25x5 windows; its dense layer reads 64 features for each of 12 classes."""
    ops = zoo_models.package("ds_cnn_kws").ops
    first = ops[0]
    assert first.op == "CONV_2D"
    assert (first.macs, first.elements_in, first.elements_out) == (25 * 5 * 64 * 40, 490, 8000)
    (pool,) = [op for op in ops if op.op == "AVERAGE_POOL_2D"]
    assert pool.macs == 64 * 25 * 5 and pool.elements_out == 64
    (dense,) = [op for op in ops if op.op == "FULLY_CONNECTED"]
    assert dense.macs == 12 * 64
    assert cost_class("FULLY_CONNECTED") == CostClass.MAC
    assert cost_class("MEAN") == CostClass.WINDOW
    assert cost_class("HARD_SWISH") == CostClass.ELEMENTWISE


def test_every_model_gets_an_esp32s3_profile(zoo_models: ZooModels, zoo_name: str) -> None:
    package = zoo_models.package(zoo_name)
    profile = load_compute_profile("esp32s3:0.05", package)
    assert profile.estimated and profile.basis.startswith("ESTIMATED")
    times = profile.per_op_ms
    assert times is not None and len(times) == package.num_ops
    assert all(t >= 0 for t in times) and sum(times) > 0
    # Work-heavy operators cost more than the element-wise ones around them.
    heaviest = max(range(package.num_ops), key=lambda i: package.ops[i].macs)
    assert times[heaviest] == max(times)
    emulator = ComputeEmulator(profile)
    assert emulator.op_seconds(heaviest, 0.0) == pytest.approx(times[heaviest] / 1000)
