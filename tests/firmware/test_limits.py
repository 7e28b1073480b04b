"""Limits the C firmware shares with the Python side are defined once and agree."""

from __future__ import annotations

from pathlib import Path

import annotated_types

from sciot_mqtt.models.export import format as blob_format
from sciot_mqtt.protocol import InferRequest
from sciot_mqtt.protocol.cgen import render

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-bridge"


def test_one_limit_of_boundary_tensors() -> None:
    """The most tensors at a split point: the contract's, the exporter's and the C one agree.

    C defines it once, from the generated header (sciot/tensor.h); the exporter, which must
    refuse a model whose boundaries would not fit the wire, keeps a copy checked here."""
    (contract,) = [
        m.max_length
        for m in InferRequest.model_fields["tensors"].metadata
        if isinstance(m, annotated_types.MaxLen)
    ]
    assert contract == blob_format.MAX_BOUNDARY_TENSORS
    assert f"#define SCIOT_INFER_REQUEST_TENSORS_MAX_LEN {contract}u\n" in render()
    tensor_h = (FIRMWARE / "core/include/sciot/tensor.h").read_text()
    assert "#define SCIOT_MAX_BOUNDARY_TENSORS SCIOT_INFER_REQUEST_TENSORS_MAX_LEN\n" in tensor_h
