"""Run a prepared model whole, op by op (device head) or as a fused tail (edge), via LiteRT.

Every interpreter here is built the same way: one thread and the builtin kernels without
default delegates. The default (``AUTO``) resolver applies XNNPACK, which rewrites and
fuses the graph it is given, so a lone operator and the same operator inside the whole
graph could be computed by different kernels; without it each op runs the same builtin
kernel whatever segment it is in, which is what makes head-then-tail bit-identical to the
whole model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.manifest import TensorSpec
from sciot_mqtt.models.package import ModelPackage

__all__ = ["OP_RESOLVER", "SegmentRunner", "make_interpreter"]

# What resizing a tail to a batch can raise: LiteRT refuses the shapes (a RESHAPE to a fixed
# batch of 1, say) at `allocate_tensors` or at `invoke`.
_RESIZE_ERRORS = (ValueError, RuntimeError)

OP_RESOLVER = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def make_interpreter(path: str | Path, *, default_delegates: bool = False) -> Interpreter:
    """An allocated LiteRT interpreter with the settings every segment must share.

    `default_delegates`: LiteRT's default delegates (XNNPACK) instead, for benchmarks that
    compare them with the builtin kernels; the service never runs them (docs/perf.md)."""
    resolver = OpResolverType.BUILTIN if default_delegates else OP_RESOLVER
    try:
        interpreter = Interpreter(
            model_path=str(path),
            num_threads=1,
            experimental_op_resolver_type=resolver,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"LiteRT cannot load {path}: {exc}") from exc
    return interpreter


class _Segment:
    """An interpreter plus which original tensors feed and leave it, in its I/O order."""

    def __init__(
        self, path: Path, inputs: list[int], outputs: list[int], *, default_delegates: bool = False
    ) -> None:
        self.path = path
        self.interpreter = make_interpreter(path, default_delegates=default_delegates)
        in_details = self.interpreter.get_input_details()
        out_details = self.interpreter.get_output_details()
        if len(in_details) != len(inputs) or len(out_details) != len(outputs):
            raise ModelError(f"segment {path.name} does not match the manifest; re-prepare")
        self.batch = 1
        self._input_shapes = [list(d["shape"]) for d in in_details]
        self.inputs = list(zip(inputs, (d["index"] for d in in_details), strict=True))
        self.outputs = list(zip(outputs, (d["index"] for d in out_details), strict=True))

    def resize(self, batch: int) -> None:
        """Every input's first (batch) dimension set to `batch`; a no-op at the current size.

        Resizing costs 8-22 us on fomo96's tails (an interpreter per batch size would cost
        0.5-12 ms to build and its arena to keep, for each size, split and thread)."""
        if batch == self.batch:
            return
        it = self.interpreter
        self.batch = 0  # unknown until every input is resized and the arena allocated
        try:
            for (_, local), shape in zip(self.inputs, self._input_shapes, strict=True):
                if not shape or shape[0] != 1:
                    raise ModelError(f"segment {self.path.name}: input {shape} has no batch of 1")
                it.resize_tensor_input(local, [batch, *shape[1:]])
            it.allocate_tensors()
        except _RESIZE_ERRORS as exc:
            raise ModelError(
                f"segment {self.path.name} cannot run a batch of {batch}: {exc}"
            ) from exc
        self.batch = batch

    def run(self, tensors: Mapping[int, np.ndarray]) -> tuple[dict[int, np.ndarray], float]:
        it = self.interpreter
        for original, local in self.inputs:
            it.set_tensor(local, tensors[original])
        start = time.perf_counter()
        it.invoke()
        elapsed = time.perf_counter() - start
        return {original: it.get_tensor(local) for original, local in self.outputs}, elapsed


class SegmentRunner:
    """Runs a ``ModelPackage``; interpreters are created on first use and then reused.

    Not thread-safe (LiteRT interpreters are not): use one runner per thread.
    `default_delegates`: every interpreter with XNNPACK (`make_interpreter`), for benchmarks.
    """

    def __init__(self, package: ModelPackage, *, default_delegates: bool = False) -> None:
        self.package = package
        self._default_delegates = default_delegates
        self._ops: dict[int, _Segment] = {}
        self._tails: dict[int, _Segment] = {}
        self._batched: dict[int, _Segment] = {}
        self._whole: _Segment | None = None
        self._specs: dict[int, TensorSpec] = {}
        for b in package.boundaries:
            for t in b.tensors:
                self._specs[t.index] = t
        for t in (*package.inputs, *package.outputs):
            self._specs[t.index] = t

    def warm_up(self) -> None:
        """Create every interpreter now rather than on the first request."""
        self._whole_segment()
        for i in range(self.package.num_ops):
            self._op_segment(i)
        for s in range(self.package.num_ops):
            self._tail_segment(s)

    # -- public runs --------------------------------------------------------------------

    def run_whole(self, x: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Whole model on one input; returns the (first) output."""
        return self.run_whole_outputs(x)[self.package.outputs[0].name]

    def run_whole_outputs(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Whole model on one input; every graph output by name."""
        outs, _ = self._whole_segment().run(self._graph_inputs(x))
        return {t.name: outs[t.index] for t in self.package.outputs}

    def run_head(
        self, s: int, x: np.ndarray | Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], list[float]]:
        """Ops ``[0, s)`` one at a time; the tensors live at ``s`` and each op's invoke time."""
        pkg = self.package
        self._check_split(s)
        live: dict[int, np.ndarray] = self._graph_inputs(x)
        op_seconds: list[float] = []
        for i in range(s):
            outs, seconds = self._op_segment(i).run(live)
            live.update(outs)
            op_seconds.append(seconds)
            keep = {t.index for t in pkg.boundaries[i + 1].tensors}
            live = {k: v for k, v in live.items() if k in keep}
        return {t.name: live[t.index] for t in pkg.boundaries[s].tensors}, op_seconds

    def run_op(
        self, i: int, tensors: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], float]:
        """Op ``i`` alone, from the tensors live at ``i``; the tensors live at ``i + 1`` and
        its invoke time (a device timing the rest of a model one op at a time)."""
        pkg = self.package
        if not 0 <= i < pkg.num_ops:
            raise ModelError(f"op {i} outside 0..{pkg.num_ops - 1}")
        boundary = pkg.boundaries[i]
        missing = [t.name for t in boundary.tensors if t.name not in tensors]
        if missing:
            raise ModelError(f"op {i}: missing tensors {missing}")
        live = {t.index: t.check(tensors[t.name]) for t in boundary.tensors}
        outs, seconds = self._op_segment(i).run(live)
        live.update(outs)
        return {t.name: live[t.index] for t in pkg.boundaries[i + 1].tensors}, seconds

    def run_tail_outputs(self, s: int, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ops ``[s, N)`` fused, from the tensors live at ``s``; every graph output by name."""
        pkg = self.package
        self._check_split(s)
        boundary = pkg.boundaries[s]
        given: dict[int, np.ndarray] = {}
        missing = [t.name for t in boundary.tensors if t.name not in tensors]
        if missing:
            raise ModelError(f"split {s}: missing tensors {missing}")
        for t in boundary.tensors:
            given[t.index] = t.check(tensors[t.name])
        results: dict[int, np.ndarray] = {}
        if s < pkg.num_ops:
            results, _ = self._tail_segment(s).run(given)
        out = {}
        for spec in pkg.outputs:
            value = results.get(spec.index, given.get(spec.index))
            if value is None:
                raise ModelError(f"split {s}: output {spec.name!r} was not produced")
            out[spec.name] = value
        return out

    def run_tail(self, s: int, tensors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Ops ``[s, N)`` fused; returns the (first) model output."""
        return self.run_tail_outputs(s, tensors)[self.package.outputs[0].name]

    def run_tail_batch(self, s: int, items: Sequence[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
        """Ops ``[s, N)`` fused, for several inputs in ONE invoke with the batch dimension
        resized to their number; each item's (first) model output, in order.

        Only for a split whose tail `models.batching.batchable_splits` proved bit-identical
        to lone runs: the interpreter is built (once per batch size) from the same tail file,
        and raises `ModelError` if LiteRT refuses the batch."""
        pkg = self.package
        self._check_split(s)
        if s >= pkg.num_ops:
            raise ModelError(f"split {s}: nothing left to run in a batch")
        boundary = pkg.boundaries[s]
        given: dict[int, np.ndarray] = {}
        for t in boundary.tensors:
            try:
                parts = [t.check(item[t.name]) for item in items]
            except KeyError as exc:
                raise ModelError(f"split {s}: missing tensor {exc}") from None
            given[t.index] = np.concatenate(parts)
        segment = self._batch_segment(s)
        segment.resize(len(items))
        try:
            results, _ = segment.run(given)
        except _RESIZE_ERRORS as exc:  # a shape only `invoke` finds wrong
            raise ModelError(
                f"split {s}: the tail cannot run a batch of {len(items)}: {exc}"
            ) from exc
        spec = pkg.outputs[0]
        batched = results.get(spec.index, given.get(spec.index))
        if batched is None or batched.shape[0] != len(items):
            raise ModelError(f"split {s}: output {spec.name!r} has no batch of {len(items)}")
        return [batched[k : k + 1] for k in range(len(items))]

    # -- internals ----------------------------------------------------------------------

    def _check_split(self, s: int) -> None:
        if not 0 <= s <= self.package.num_ops:
            raise ModelError(f"split point {s} outside 0..{self.package.num_ops}")

    def _graph_inputs(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
        specs = self.package.inputs
        if isinstance(x, Mapping):
            missing = [s.name for s in specs if s.name not in x]
            if missing:
                raise ModelError(f"missing model inputs {missing}")
            return {s.index: s.check(x[s.name]) for s in specs}
        if len(specs) != 1:
            raise ModelError(f"model has {len(specs)} inputs; pass a dict name -> array")
        return {specs[0].index: specs[0].check(x)}

    def _whole_segment(self) -> _Segment:
        if self._whole is None:
            pkg = self.package
            self._whole = _Segment(
                pkg.model_path,
                [t.index for t in pkg.inputs],
                [t.index for t in pkg.outputs],
                default_delegates=self._default_delegates,
            )
        return self._whole

    def _op_segment(self, i: int) -> _Segment:
        seg = self._ops.get(i)
        if seg is None:
            op = self.package.ops[i]
            seg = _Segment(
                self.package.op_segment_path(i),
                list(op.inputs),
                list(op.outputs),
                default_delegates=self._default_delegates,
            )
            self._ops[i] = seg
        return seg

    def _tail_segment(self, s: int) -> _Segment:
        seg = self._tails.get(s)
        if seg is None:
            seg = self._tails[s] = self._new_tail(s)
        return seg

    def _batch_segment(self, s: int) -> _Segment:
        """A second interpreter of the tail at `s`, resized to each batch: the lone runs'
        one keeps its batch of 1, so a lone request never pays for a resize."""
        seg = self._batched.get(s)
        if seg is None:
            seg = self._batched[s] = self._new_tail(s)
        return seg

    def _new_tail(self, s: int) -> _Segment:
        b = self.package.boundaries[s]
        return _Segment(
            self.package.tail_segment_path(s),
            list(b.tail_inputs),
            list(b.tail_outputs),
            default_delegates=self._default_delegates,
        )

    def __repr__(self) -> str:
        return f"SegmentRunner({self.package.model_id!r}, ops={self.package.num_ops})"
