"""Read a TFLite flatbuffer, find the tensors live at each operator boundary, cut segments.

Uses the LiteRT flatbuffer schema module that ships inside ``ai-edge-litert`` (the same
package whose interpreter runs the segments, so reader and runtime agree on the schema
version) through its object API, plus ``flatbuffers``. No TensorFlow.

Boundaries are numbered like split points: boundary ``s`` sits before operator ``s`` in
execution order (the order of the subgraph's operator vector, which is the order the
interpreter runs them in); boundary 0 is the model input, boundary ``N`` the output.
Segments are cut from the one quantized model, so every tensor keeps its exact
quantization parameters and constant data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from sciot_mqtt.models.errors import ModelError, UnsupportedModelError

__all__ = ["TensorInfo", "TfliteGraph", "builtin_op_name"]

_FILE_IDENTIFIER = b"TFL3"
# TFLite's own converter aligns constant buffers to 16 bytes; the schema's generated
# Pack() does not, so segments would otherwise carry weights at arbitrary offsets.
_BUFFER_ALIGNMENT = 16

_OP_NAMES: dict[int, str] = {
    v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")
}
_TYPE_NAMES: dict[int, str] = {
    v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")
}
_ITEMSIZE: dict[str, int] = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int32": 4,
    "uint32": 4,
    "int64": 8,
    "uint64": 8,
    "int16": 2,
    "uint16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "complex64": 8,
    "complex128": 16,
}


def builtin_op_name(code: int) -> str:
    return _OP_NAMES.get(code, f"BUILTIN_{code}")


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A tensor of the main subgraph, by its index in that subgraph."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def nbytes(self) -> int:
        size = _ITEMSIZE.get(self.dtype)
        if size is None:
            raise UnsupportedModelError(f"tensor {self.name!r} has type {self.dtype}")
        return int(np.prod(self.shape, dtype=np.int64)) * size


class _AlignedBufferT(schema.BufferT):  # type: ignore[misc]
    def Pack(self, builder: flatbuffers.Builder) -> int:
        data_offset = None
        if self.data is not None and len(self.data):
            payload = np.asarray(self.data, dtype=np.uint8).tobytes()
            # Same steps as Builder.CreateNumpyVector, with a wider alignment.
            builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data_offset = builder.EndVector()
        schema.BufferStart(builder)
        if data_offset is not None:
            schema.BufferAddData(builder, data_offset)
        return int(schema.BufferEnd(builder))


class TfliteGraph:
    """The main subgraph of a ``.tflite`` model: operators, tensors and liveness."""

    def __init__(self, model_bytes: bytes) -> None:
        if len(model_bytes) < 8 or model_bytes[4:8] != _FILE_IDENTIFIER:
            raise ModelError("not a TFLite flatbuffer (file identifier 'TFL3' missing)")
        try:
            model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
        except Exception as exc:  # the generated reader raises anything on garbage
            raise ModelError(f"cannot parse TFLite flatbuffer: {exc}") from exc
        if not model.subgraphs:
            raise ModelError("model has no subgraph")
        # Large models keep buffers after the flatbuffer and point at them; inline them so
        # that cut segments are self-contained.
        for buf in model.buffers or []:
            if getattr(buf, "offset", 0) and buf.offset > 1:
                buf.data = np.frombuffer(
                    model_bytes, np.uint8, count=buf.size, offset=buf.offset
                ).copy()
                buf.offset = 0
                buf.size = 0
        for sg in model.subgraphs:
            for op in sg.operators or []:
                if getattr(op, "largeCustomOptionsOffset", 0) and op.largeCustomOptionsOffset > 1:
                    start = op.largeCustomOptionsOffset
                    op.customOptions = np.frombuffer(
                        model_bytes, np.uint8, count=op.largeCustomOptionsSize, offset=start
                    ).copy()
                    op.largeCustomOptionsOffset = 0
                    op.largeCustomOptionsSize = 0
        self._model = model
        self._sg = model.subgraphs[0]
        try:
            self._analyse()
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"malformed TFLite model: {exc!r}") from exc

    def _analyse(self) -> None:
        sg = self._sg
        tensors = sg.tensors or []
        self.num_tensors = len(tensors)
        self.inputs: list[int] = [int(t) for t in _ints(sg.inputs)]
        self.outputs: list[int] = [int(t) for t in _ints(sg.outputs)]
        self.op_inputs: list[list[int]] = []
        self.op_outputs: list[list[int]] = []
        self.op_names: list[str] = []
        for op in sg.operators or []:
            self.op_inputs.append([int(t) for t in _ints(op.inputs) if t >= 0])
            self.op_outputs.append([int(t) for t in _ints(op.outputs) if t >= 0])
            self.op_names.append(self._op_name(op))
        self.num_ops = len(self.op_names)
        if self.num_ops == 0:
            raise ModelError("model has no operators")
        self._check_supported()
        self._tensor_info = [self._info(i) for i in range(self.num_tensors)]
        self._compute_liveness()

    # -- description -------------------------------------------------------------------

    def tensor(self, index: int) -> TensorInfo:
        return self._tensor_info[index]

    def op_options(self, op_index: int) -> Any:
        """Operator ``op_index``'s builtin options (a ``schema.*OptionsT``), or None."""
        return self._sg.operators[op_index].builtinOptions

    def is_constant(self, index: int) -> bool:
        buf = self._buffer_of(index)
        return buf is not None and buf.data is not None and len(buf.data) > 0

    def live_at(self, boundary: int) -> list[int]:
        """Tensors live across boundary ``s``: made before it, needed at or after it."""
        if not 0 <= boundary <= self.num_ops:
            raise IndexError(f"boundary {boundary} outside 0..{self.num_ops}")
        return list(self._live[boundary])

    def op_segment_io(self, op_index: int) -> tuple[list[int], list[int]]:
        """Inputs and outputs of the one-operator segment ``[i, i+1)``."""
        ins = _unique(t for t in self.op_inputs[op_index] if t in self._activation)
        live_after = set(self._live[op_index + 1])
        outs = [t for t in self.op_outputs[op_index] if t in live_after]
        # An op whose results nobody reads still needs an output for the interpreter to
        # run it (and to be timed); the interpreter does not prune dead ops.
        return ins, outs or list(self.op_outputs[op_index])

    def tail_segment_io(self, boundary: int) -> tuple[list[int], list[int]]:
        """Inputs and outputs of the fused segment ``[s, N)``.

        Graph outputs already computed before ``s`` are not routed through the segment:
        the runner passes them along itself.
        """
        produced_after = {t for i in range(boundary, self.num_ops) for t in self.op_outputs[i]}
        consumed_after = {t for i in range(boundary, self.num_ops) for t in self.op_inputs[i]}
        ins = [t for t in self._live[boundary] if t in consumed_after]
        outs = [t for t in self.outputs if t in produced_after]
        return ins, outs

    # -- cutting ------------------------------------------------------------------------

    def cut(self, start: int, stop: int, inputs: list[int], outputs: list[int]) -> bytes:
        """Serialize ops ``[start, stop)`` as a standalone model with the given I/O tensors."""
        if not 0 <= start < stop <= self.num_ops:
            raise IndexError(f"bad segment [{start}, {stop}) of {self.num_ops} ops")
        model = copy.copy(self._model)
        sg = copy.copy(self._sg)
        ops = [copy.copy(op) for op in self._sg.operators[start:stop]]
        used: set[int] = set(inputs) | set(outputs)
        for op in ops:
            for field in ("inputs", "outputs", "intermediates"):
                used.update(int(t) for t in _ints(getattr(op, field, None)) if t >= 0)
        order = sorted(used)
        remap = {old: new for new, old in enumerate(order)}

        # Buffer 0 stays the empty sentinel; every non-empty buffer still referenced (by
        # the kept tensors, other subgraphs or metadata) keeps its bytes.
        old_buffers = self._model.buffers or []
        new_buffers: list[Any] = [_AlignedBufferT()]
        buffer_map: dict[int, int] = {}

        def keep_buffer(old: int) -> int:
            if old <= 0 or old >= len(old_buffers):
                return 0
            src = old_buffers[old]
            if src.data is None or len(src.data) == 0:
                return 0
            if old not in buffer_map:
                dst = _AlignedBufferT()
                dst.data = src.data
                buffer_map[old] = len(new_buffers)
                new_buffers.append(dst)
            return buffer_map[old]

        tensors = []
        for old in order:
            t = copy.copy(self._sg.tensors[old])
            t.buffer = keep_buffer(int(t.buffer))
            tensors.append(t)
        for op in ops:
            op.inputs = [remap[int(t)] if t >= 0 else -1 for t in _ints(op.inputs)]
            op.outputs = [remap[int(t)] if t >= 0 else -1 for t in _ints(op.outputs)]
            if getattr(op, "intermediates", None) is not None:
                op.intermediates = [remap[int(t)] for t in _ints(op.intermediates)]
        sg.tensors = tensors
        sg.operators = ops
        sg.inputs = [remap[t] for t in inputs]
        sg.outputs = [remap[t] for t in outputs]

        other = []
        for extra in self._model.subgraphs[1:]:
            extra = copy.copy(extra)
            extra.tensors = [copy.copy(t) for t in extra.tensors or []]
            for t in extra.tensors:
                t.buffer = keep_buffer(int(t.buffer))
            other.append(extra)
        model.subgraphs = [sg, *other]
        metadata = []
        for md in self._model.metadata or []:
            md = copy.copy(md)
            md.buffer = keep_buffer(int(md.buffer))
            metadata.append(md)
        model.metadata = metadata or None
        model.buffers = new_buffers
        # Signatures name tensors of the whole graph by index; they would be wrong here.
        model.signatureDefs = None
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
        return bytes(builder.Output())

    # -- internals ----------------------------------------------------------------------

    def _op_name(self, op: Any) -> str:
        codes = self._model.operatorCodes or []
        if not 0 <= op.opcodeIndex < len(codes):
            raise ModelError(f"operator refers to missing opcode {op.opcodeIndex}")
        oc = codes[op.opcodeIndex]
        # Codes above 127 live in builtinCode only; older files use the deprecated byte.
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        if code == schema.BuiltinOperator.CUSTOM:
            custom = oc.customCode.decode() if oc.customCode else "?"
            return f"CUSTOM:{custom}"
        return builtin_op_name(code)

    def _buffer_of(self, index: int) -> Any:
        buf_index = int(self._sg.tensors[index].buffer)
        buffers = self._model.buffers or []
        return buffers[buf_index] if 0 < buf_index < len(buffers) else None

    def _info(self, index: int) -> TensorInfo:
        t = self._sg.tensors[index]
        name = t.name.decode("utf-8", "replace") if t.name else f"tensor_{index}"
        dtype = _TYPE_NAMES.get(int(t.type), f"type_{t.type}")
        shape = tuple(int(d) for d in _ints(t.shape))
        scale, zero_point = 0.0, 0
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) == 1:
            scale = float(q.scale[0])
            zero_point = int(q.zeroPoint[0]) if q.zeroPoint is not None else 0
        return TensorInfo(index, name, shape, dtype, scale, zero_point)

    def _check_supported(self) -> None:
        sg = self._sg
        for i, t in enumerate(sg.tensors or []):
            if t.isVariable or int(t.type) in (
                schema.TensorType.RESOURCE,
                schema.TensorType.VARIANT,
                schema.TensorType.STRING,
            ):
                # State carried between invocations (or strings) cannot be shipped as a
                # plain array across a cut.
                name = t.name.decode("utf-8", "replace") if t.name else str(i)
                raise UnsupportedModelError(
                    f"tensor {name!r} is a variable, resource or string tensor; "
                    "stateful models cannot be split"
                )

    def _compute_liveness(self) -> None:
        produced_at: dict[int, int] = {t: -1 for t in self.inputs}
        for i, outs in enumerate(self.op_outputs):
            for t in outs:
                produced_at.setdefault(t, i)
        last_use: dict[int, int] = {}
        for i, ins in enumerate(self.op_inputs):
            for t in ins:
                last_use[t] = i
        for t in self.outputs:
            last_use[t] = self.num_ops  # graph outputs stay live to the end
        # Activations: tensors that flow (graph inputs or op results), never weights.
        self._activation = {t for t in produced_at if not self.is_constant(t)}
        self._live: list[list[int]] = []
        for s in range(self.num_ops + 1):
            live = [
                t
                for t in sorted(self._activation, key=lambda t: (produced_at[t], t))
                if produced_at[t] < s and last_use.get(t, -2) >= s
            ]
            self._live.append(live)
        for t in self.outputs:
            if t not in produced_at:
                raise ModelError(f"graph output {t} is produced by no operator")


def _ints(values: Any) -> list[int]:
    if values is None:
        return []
    return [int(v) for v in values]


def _unique(values: Any) -> list[int]:
    seen: dict[int, None] = {}
    for v in values:
        seen.setdefault(int(v), None)
    return list(seen)
