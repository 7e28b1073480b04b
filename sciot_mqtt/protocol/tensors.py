"""Tensors at a split point <-> the wire: the one place arrays become `Tensor`s and back.

A split point of a model is described by the layouts of the tensors live across it (the
model manifest's `TensorSpec`s satisfy `TensorLayout`). The device encodes its arrays against
those layouts, the service decodes and validates what arrives against the same layouts, and
the result's output tensor travels the same way back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from sciot_mqtt.errors import ErrorCode, ProtocolError
from sciot_mqtt.protocol.device_messages import (
    Dtype,
    Tensor,
)

NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "float32": np.dtype(np.float32),
}
"""The numpy type of every wire dtype (little-endian on every platform we run on)."""


class TensorLayout(Protocol):
    """What the wire needs to know of one tensor: which it is, its type, shape, quantization."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> Dtype: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def scale(self) -> float: ...
    @property
    def zero_point(self) -> int: ...
    @property
    def nbytes(self) -> int: ...


def encode_tensor(layout: TensorLayout, array: np.ndarray) -> Tensor:
    """One array as the wire carries it: raw bytes in C order plus its layout."""
    data = np.ascontiguousarray(array).tobytes()
    if len(data) != layout.nbytes:
        raise ValueError(
            f"tensor {layout.index}: {len(data)} bytes, its layout has {layout.nbytes}"
        )
    return Tensor(
        index=layout.index,
        dtype=layout.dtype,
        shape=list(layout.shape),
        scale=layout.scale,
        zero_point=layout.zero_point,
        data=data,
    )


def encode_tensors(
    layouts: Sequence[TensorLayout], arrays: Mapping[str, np.ndarray]
) -> list[Tensor]:
    """The arrays live at a split point, in the order of its layouts."""
    return [encode_tensor(layout, arrays[layout.name]) for layout in layouts]


def decode_tensor(layout: TensorLayout, tensor: Tensor) -> np.ndarray:
    """A wire tensor as an array, if it is exactly what `layout` says; else `ProtocolError`."""
    problems = []
    if tensor.index != layout.index:
        problems.append(f"index {tensor.index} != {layout.index}")
    if tensor.dtype != layout.dtype:
        problems.append(f"dtype {tensor.dtype} != {layout.dtype}")
    if tuple(tensor.shape) != layout.shape:
        problems.append(f"shape {tuple(tensor.shape)} != {layout.shape}")
    if tensor.scale != layout.scale or tensor.zero_point != layout.zero_point:
        problems.append(
            f"quantization ({tensor.scale}, {tensor.zero_point}) "
            f"!= ({layout.scale}, {layout.zero_point})"
        )
    if len(tensor.data) != layout.nbytes:
        problems.append(f"{len(tensor.data)} bytes != {layout.nbytes}")
    if problems:
        raise ProtocolError(
            ErrorCode.TENSOR_MISMATCH, f"tensor {layout.index}: " + "; ".join(problems)
        )
    return np.frombuffer(tensor.data, dtype=NUMPY_DTYPES[layout.dtype]).reshape(layout.shape)


def decode_tensors(
    layouts: Sequence[TensorLayout], tensors: Sequence[Tensor]
) -> dict[str, np.ndarray]:
    """The tensors of a request as arrays by name, validated against the split's layouts."""
    if [t.index for t in tensors] != [layout.index for layout in layouts]:
        raise ProtocolError(
            ErrorCode.TENSOR_MISMATCH,
            f"this split takes tensors {[layout.index for layout in layouts]}, "
            f"got {[t.index for t in tensors][:8]}",
        )
    return {
        layout.name: decode_tensor(layout, tensor)
        for layout, tensor in zip(layouts, tensors, strict=True)
    }
