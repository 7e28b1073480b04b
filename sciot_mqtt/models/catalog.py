"""Model ids -> prepared packages: the zoo first, then models prepared with `models split`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sciot_mqtt.models.cache import default_cache_dir
from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.zoo import zoo_model_ids, zoo_model_path

__all__ = ["resolve_package", "resolve_packages"]


def resolve_package(model_id: str, cache_dir: str | Path | None = None) -> ModelPackage:
    if model_id in zoo_model_ids():
        return ModelPackage.prepare(zoo_model_path(model_id), cache_dir, model_id=model_id)
    # The same id may have been prepared from several files over time: take the latest.
    prepared = [p for p in ModelPackage.list_cached(cache_dir) if p.model_id == model_id]
    if prepared:
        return max(prepared, key=lambda p: p.directory.stat().st_mtime)
    where = cache_dir or default_cache_dir()
    raise ModelError(
        f"model {model_id!r} is neither in the zoo {zoo_model_ids()} nor prepared in {where}; "
        "prepare it with: sciot-mqtt models split PATH"
    )


def resolve_packages(
    model_ids: Iterable[str], cache_dir: str | Path | None = None
) -> dict[str, ModelPackage]:
    return {model_id: resolve_package(model_id, cache_dir) for model_id in model_ids}
