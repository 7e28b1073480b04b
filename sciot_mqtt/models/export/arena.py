"""The activation arena: one static offset for every op result, shared by every split.

``place`` is the planner, also used for the memory budget (``budget``): largest tensor
first, each at the lowest offset free over its whole lifetime, sizes rounded up to 16
bytes. TFLite Micro's ``GreedyMemoryPlanner`` places its tensors the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sciot_mqtt.models.export.format import align

__all__ = ["ArenaPlan", "place", "plan_arena"]


@dataclass(frozen=True, slots=True)
class ArenaPlan:
    offsets: dict[int, int]  # op result tensor -> its offset in the arena
    size: int  # bytes the arena needs


def plan_arena(
    num_ops: int,
    op_inputs: Sequence[Sequence[int]],
    op_outputs: Sequence[Sequence[int]],
    graph_outputs: Sequence[int],
    sizes: Mapping[int, int],
) -> ArenaPlan:
    """Static offsets for every op result: two results share bytes only if never both live.

    A run of any range [a, b) reads its inputs from the caller and writes the tensors live
    at b to the caller, so this one plan (made for the whole graph) serves every range.
    """
    produced: dict[int, int] = {}
    for i, outs in enumerate(op_outputs):
        for t in outs:
            produced.setdefault(t, i)
    last: dict[int, int] = dict(produced)
    for i, ins in enumerate(op_inputs):
        for t in ins:
            if t in produced:
                last[t] = max(last[t], i)
    for t in graph_outputs:
        if t in produced:
            last[t] = num_ops
    lifetimes = {t: (produced[t], last[t]) for t in produced}
    return place(lifetimes, sizes)


def place(lifetimes: Mapping[int, tuple[int, int]], sizes: Mapping[int, int]) -> ArenaPlan:
    """Offsets for tensors live over (first, last) operator, both inclusive: two share bytes
    only if their lifetimes do not overlap."""
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    offsets: dict[int, int] = {}
    # Largest first, each at the lowest offset free over its whole lifetime.
    for t in sorted(lifetimes, key=lambda t: (-sizes[t], lifetimes[t][0], t)):
        size, (first, end) = align(sizes[t]), lifetimes[t]
        clashes = sorted((o, s) for o, s, f, e in placed if not (e < first or end < f))
        offset = 0
        for o, s in clashes:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, end))
        offsets[t] = offset
    return ArenaPlan(offsets, max((o + s for o, s, _, _ in placed), default=0))
