"""The README's configuration tables list every setting with its real default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices
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
        # A field read from named variables (the model cache) is shown with the first one.
        alias = field.validation_alias
        env = alias.choices[0] if isinstance(alias, AliasChoices) else f"{prefix}{name.upper()}"
        row = f"| `{name}` | `{env}` | `{shown}` |"
        assert row in README, f"README lacks the row for {name}: {row}"


def test_one_model_cache_variable_for_every_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SCIOT_MODEL_CACHE moves the cache of `up`, `device` and `models` alike; the old
    names still work."""
    from sciot_mqtt.models.cache import default_cache_dir

    for old in ("SCIOT_DEVICE_MODEL_CACHE", "SCIOT_MQTT_MODEL_CACHE"):
        monkeypatch.delenv(old, raising=False)
    monkeypatch.setenv("SCIOT_MODEL_CACHE", str(tmp_path / "one"))
    assert ServiceSettings(_env_file=None).model_cache == str(tmp_path / "one")  # type: ignore[call-arg]
    assert DeviceSettings(_env_file=None).model_cache == str(tmp_path / "one")  # type: ignore[call-arg]
    assert default_cache_dir() == tmp_path / "one"
    assert DeviceSettings(_env_file=None, model_cache="flag").model_cache == "flag"  # type: ignore[call-arg]
    monkeypatch.delenv("SCIOT_MODEL_CACHE")
    monkeypatch.setenv("SCIOT_DEVICE_MODEL_CACHE", str(tmp_path / "old-device"))
    monkeypatch.setenv("SCIOT_MQTT_MODEL_CACHE", str(tmp_path / "old-models"))
    assert DeviceSettings(_env_file=None).model_cache == str(tmp_path / "old-device")  # type: ignore[call-arg]
    assert default_cache_dir() == tmp_path / "old-models"
