"""``export_blob``: a prepared int8 package as a sciot model blob (layout: ``format``)."""

from __future__ import annotations

import struct

from sciot_mqtt.models.errors import ModelError, UnsupportedModelError
from sciot_mqtt.models.export.arena import ArenaPlan, plan_arena
from sciot_mqtt.models.export.format import (
    BLOB_MAGIC,
    BLOB_VERSION,
    HEADER,
    KIND_ACTIVATION,
    KIND_CONSTANT,
    KIND_UNUSED,
    MAX_BOUNDARY_TENSORS,
    NO_TENSOR,
    NOWHERE,
    TENSOR,
    BlobWriter,
)
from sciot_mqtt.models.export.ops import OpContext, encode_ops
from sciot_mqtt.models.export.quant import ROUNDINGS
from sciot_mqtt.models.export.rounding import detect_conv_rounding
from sciot_mqtt.models.export.source import SourceModel, read_source
from sciot_mqtt.models.package import ModelPackage

__all__ = ["export_blob"]


def export_blob(package: ModelPackage, conv_rounding: int | None = None) -> bytes:
    """The sciot model blob of a prepared int8 package.

    ``conv_rounding`` (a ``ROUNDING_*``) defaults to what ``detect_conv_rounding`` measures
    LiteRT doing on this machine; the blob is deterministic for a given value.
    """
    source = read_source(package)
    tensors = source.tensors
    if conv_rounding is None:
        conv_rounding = detect_conv_rounding(package)[0]
    if conv_rounding not in ROUNDINGS.values():
        raise ValueError(f"unknown rounding {conv_rounding}")
    if len(tensors) >= NO_TENSOR:
        raise UnsupportedModelError(f"{len(tensors)} tensors; the blob indexes at most 65534")
    ops = source.operators
    if len(ops) != package.num_ops:
        raise ModelError("model and manifest disagree on the number of operators")
    w = BlobWriter()
    w.buf.extend(b"\0" * HEADER.size)

    constant_at: dict[int, int] = {}
    for i, t in enumerate(tensors):
        if t.data is not None:
            if len(t.data) != t.nbytes:
                raise ModelError(f"tensor {i}: {len(t.data)} bytes of data for shape {t.shape}")
            constant_at[i] = w.place(t.data)

    contexts = []
    op_inputs: list[list[int]] = []
    op_outputs: list[list[int]] = []
    for i, op in enumerate(ops):
        ins = [int(x) for x in op.inputs]
        outs = [int(x) for x in op.outputs]
        op_inputs.append([t for t in ins if t >= 0 and t not in constant_at])
        op_outputs.append(outs)
        contexts.append(
            OpContext(
                index=i,
                name=package.ops[i].op,
                ins=ins,
                outs=outs,
                options=op.builtinOptions,
                tensors=tensors,
                writer=w,
                conv_rounding=conv_rounding,
            )
        )
    op_records = encode_ops([source.op_code(op) for op in ops], contexts)

    sizes = {t: tensors[t].nbytes for outs in op_outputs for t in outs}
    graph_outputs = [int(t) for t in source.subgraph.outputs]
    arena = plan_arena(len(ops), op_inputs, op_outputs, graph_outputs, sizes)
    off_tensors = w.place(_tensor_table(source, constant_at, arena))
    off_ops = w.place(b"".join(op_records))
    off_bounds = _place_boundaries(package, source, w)
    w.pad_to_alignment()

    model_id = package.model_id.encode()[:31]
    HEADER.pack_into(
        w.buf,
        0,
        BLOB_MAGIC,
        BLOB_VERSION,
        HEADER.size,
        len(w.buf),
        len(tensors),
        len(ops),
        arena.size,
        off_tensors,
        off_ops,
        off_bounds,
        bytes.fromhex(package.sha256),
        model_id.ljust(32, b"\0"),
    )
    return bytes(w.buf)


def _tensor_table(source: SourceModel, constant_at: dict[int, int], arena: ArenaPlan) -> bytes:
    graph_inputs = {int(x) for x in source.subgraph.inputs}
    table = bytearray()
    for i, t in enumerate(source.tensors):
        dims = list(t.shape) + [0] * (4 - len(t.shape))
        if i in constant_at:
            kind, where = KIND_CONSTANT, constant_at[i]
        elif i in arena.offsets:
            kind, where = KIND_ACTIVATION, arena.offsets[i]
        elif i in graph_inputs:
            kind, where = KIND_ACTIVATION, NOWHERE
        else:
            kind, where = KIND_UNUSED, NOWHERE
        table += TENSOR.pack(
            t.dtype, len(t.shape), kind, 0, *dims, t.nbytes, where, t.scale, t.zero_point, 0
        )
    return bytes(table)


def _place_boundaries(package: ModelPackage, source: SourceModel, w: BlobWriter) -> int:
    """Place the offset table and each split point's live tensor list; the table's offset."""
    lists = []
    for b in package.boundaries:
        idx = [spec.index for spec in b.tensors]
        if len(idx) > MAX_BOUNDARY_TENSORS:
            raise UnsupportedModelError(
                f"boundary {b.index} has {len(idx)} live tensors; a split point carries at "
                f"most {MAX_BOUNDARY_TENSORS} (topics.md)"
            )
        for spec in b.tensors:
            if source.tensors[spec.index].nbytes != spec.nbytes:
                raise ModelError(f"boundary {b.index}: tensor {spec.index} size mismatch")
        lists.append(struct.pack(f"<H{len(idx)}H", len(idx), *idx))
    table_at = w.place(b"\0" * 4 * len(lists))
    for k, data in enumerate(lists):
        struct.pack_into("<I", w.buf, table_at + 4 * k, w.place(data))
    return table_at
