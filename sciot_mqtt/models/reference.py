"""Measured per-layer device profiles and their mapping onto deployed TFLite operators.

A profile (``reference/*.json``) lists the Keras layers of a model with the time each one
took on real hardware. The deployed int8 graph fuses layers (Conv2D + BatchNormalization
+ ReLU become one CONV_2D, a ZeroPadding2D folds into the following depthwise conv), so to
simulate a device in time each operator needs the set of layers it stands for. TFLite
tensor names carry the Keras layer names of what was fused into the op that produced them
(``model/block_1_expand_relu_1/Relu6;model/block_1_expand_BN_1/...``), which gives most of
the mapping; the layers the converter folded away without a trace are placed by order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "REFERENCE_DIR",
    "ReferenceLayer",
    "ReferenceProfile",
    "load_reference_profiles",
    "map_reference_layers",
]

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

# Below this share of a profile's layers found by name, the model is taken to be a
# different one and gets no mapping rather than a wrong one.
_MIN_NAMED_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class ReferenceLayer:
    index: int
    name: str
    keras_class: str
    inputs: tuple[str, ...]
    ms: float
    output_bytes_float32: int


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    id: str  # file stem, e.g. "esp32s3-fomo96-layers"
    device: str  # e.g. "esp32s3", from the "<device>_ms" unit key
    layers: tuple[ReferenceLayer, ...]
    total_ms: float
    path: Path


@lru_cache(maxsize=1)
def load_reference_profiles() -> tuple[ReferenceProfile, ...]:
    profiles = []
    for path in sorted(REFERENCE_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        time_key = next(k for k in data["units"] if k.endswith("_ms"))
        layers = tuple(
            ReferenceLayer(
                index=int(layer["index"]),
                name=str(layer["keras_name"]),
                keras_class=str(layer["keras_class"]),
                inputs=tuple(layer.get("inputs", ())),
                ms=float(layer[time_key]),
                output_bytes_float32=int(layer.get("output_bytes_float32", 0)),
            )
            for layer in data["layers"]
        )
        profiles.append(
            ReferenceProfile(
                id=path.stem,
                device=time_key.removesuffix("_ms"),
                layers=layers,
                total_ms=float(data.get("total_esp32s3_ms", sum(la.ms for la in layers))),
                path=path,
            )
        )
    return tuple(profiles)


def _name_components(tensor_names: Sequence[str]) -> set[str]:
    parts: set[str] = set()
    for name in tensor_names:
        for fused in name.split(";"):
            parts.update(fused.split("/"))
    return parts


def _layer_patterns(profile: ReferenceProfile) -> dict[str, re.Pattern[str]]:
    # Keras 3 suffixes layer scopes with "_1", "_2" when tracing; tf.keras did not.
    return {la.name: re.compile(re.escape(la.name) + r"(?:_\d+)?") for la in profile.layers}


def _map_one(
    op_output_names: Sequence[Sequence[str]], profile: ReferenceProfile
) -> tuple[list[list[str]], int]:
    n_ops = len(op_output_names)
    patterns = _layer_patterns(profile)
    names = {la.name for la in profile.layers}
    owner: dict[str, int] = {}
    for i, tensor_names in enumerate(op_output_names):
        for comp in _name_components(tensor_names):
            if comp in names:
                owner.setdefault(comp, i)
                continue
            for layer_name, pattern in patterns.items():
                if layer_name not in owner and pattern.fullmatch(comp):
                    owner[layer_name] = i
    named = len(owner)

    ordered = list(profile.layers)
    assigned: list[list[str]] = [[] for _ in range(n_ops)]
    for k, layer in enumerate(ordered):
        if layer.name in owner:
            continue
        prev_op = next((owner[la.name] for la in reversed(ordered[:k]) if la.name in owner), -1)
        next_op = next((owner[la.name] for la in ordered[k + 1 :] if la.name in owner), n_ops)
        # An op with no named layer between its neighbours is what this layer became
        # (the final SOFTMAX is named after the graph output, not the layer) ...
        taken = set(owner.values())
        empty = [i for i in range(prev_op + 1, next_op) if i not in taken]
        if empty:
            owner[layer.name] = empty[0]
        # ... otherwise it was folded into a neighbour: a pad into the op that reads it.
        elif next_op < n_ops:
            owner[layer.name] = next_op
        elif prev_op >= 0:
            owner[layer.name] = prev_op
    for layer in ordered:
        if layer.name in owner:
            assigned[owner[layer.name]].append(layer.name)
    return assigned, named


def map_reference_layers(
    op_output_names: Sequence[Sequence[str]],
) -> tuple[ReferenceProfile, list[list[str]]] | None:
    """Best-matching profile and, per operator, the profile layers it fuses (or None)."""
    best: tuple[ReferenceProfile, list[list[str]]] | None = None
    best_fraction = 0.0
    for profile in load_reference_profiles():
        assigned, named = _map_one(op_output_names, profile)
        fraction = named / max(len(profile.layers), 1)
        if fraction >= _MIN_NAMED_FRACTION and fraction > best_fraction:
            best, best_fraction = (profile, assigned), fraction
    return best
