"""The firmware's C header is generated from the Python contract and committed current."""

from __future__ import annotations

from pathlib import Path

import annotated_types

from sciot_mqtt.errors import ErrorCode
from sciot_mqtt.models import export_c
from sciot_mqtt.protocol import ALL_MESSAGES, DeviceTopic, InferRequest
from sciot_mqtt.protocol.cgen import main, render

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-bridge"
HEADER = FIRMWARE / "generated/sciot_protocol.h"


def test_committed_header_is_current() -> None:
    assert HEADER.read_text() == render(), (
        "run python -m sciot_mqtt.protocol.cgen --write firmware-bridge/generated/sciot_protocol.h"
    )


def test_check_mode_fails_on_drift(tmp_path: Path) -> None:
    stale = tmp_path / "sciot_protocol.h"
    stale.write_text(render().replace('"session"', '"sesion"', 1))
    assert main(["--check", str(stale)]) == 1
    assert main(["--write", str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0


def test_every_key_topic_and_code_is_in_the_header() -> None:
    text = render()
    for message in ALL_MESSAGES:
        for name, field in message.model_fields.items():
            required = 1 if field.is_required() else 0
            assert f'"{name}", {required})' in text, f"{message.__name__}.{name}"
    for kind in DeviceTopic:
        assert f'SCIOT_DEV_TOPIC_{kind.name} "{kind.value}"' in text
    for code in ErrorCode:
        assert f'"{code.value}"' in text


def test_one_limit_of_boundary_tensors() -> None:
    """The most tensors at a split point: the contract's, the exporter's and the C one agree.

    C defines it once, from the generated header (sciot/tensor.h); the exporter, which must
    refuse a model whose boundaries would not fit the wire, keeps a copy checked here."""
    (contract,) = [
        m.max_length
        for m in InferRequest.model_fields["tensors"].metadata
        if isinstance(m, annotated_types.MaxLen)
    ]
    assert contract == export_c._MAX_BOUNDARY_TENSORS
    assert f"#define SCIOT_INFER_REQUEST_TENSORS_MAX_LEN {contract}u\n" in render()
    tensor_h = (FIRMWARE / "core/include/sciot/tensor.h").read_text()
    assert "#define SCIOT_MAX_BOUNDARY_TENSORS SCIOT_INFER_REQUEST_TENSORS_MAX_LEN\n" in tensor_h
