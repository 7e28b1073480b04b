"""The README's configuration tables list every setting with its real default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from sciot_mqtt.settings import DeviceSettings, ServiceSettings

README = (Path(__file__).parents[1] / "README.md").read_text()


@pytest.mark.parametrize(
    ("settings", "prefix"), [(ServiceSettings, "SCIOT_"), (DeviceSettings, "SCIOT_DEVICE_")]
)
def test_every_setting_is_documented_with_its_default(
    settings: type[BaseSettings], prefix: str
) -> None:
    for name, field in settings.model_fields.items():
        default = field.default
        shown = ",".join(default) if isinstance(default, list) else str(default)
        row = f"| `{name}` | `{prefix}{name.upper()}` | `{shown}` |"
        assert row in README, f"README lacks the row for {name}: {row}"
