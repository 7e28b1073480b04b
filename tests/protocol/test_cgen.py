"""The firmware's C header is generated from the Python contract and committed current."""

from __future__ import annotations

from pathlib import Path

from sciot_mqtt.errors import ErrorCode
from sciot_mqtt.protocol import ALL_MESSAGES, DeviceTopic
from sciot_mqtt.protocol.cgen import main, render

HEADER = Path(__file__).resolve().parents[2] / "firmware-bridge/generated/sciot_protocol.h"


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
