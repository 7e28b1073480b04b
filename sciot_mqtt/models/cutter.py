"""Cut one int8 ``.tflite`` into a package: a manifest, per-operator segments, fused tails.

Every boundary of the graph is a split point. For each operator ``i`` the cutter writes the
segment ``[i, i+1)`` (the device runs these one by one, so it can stop anywhere) and for
each boundary ``s < N`` the fused tail ``[s, N)`` (the edge runs the rest in one go). No
TensorFlow: the flatbuffer is read and cut by ``TfliteGraph``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sciot_mqtt.models.cache import PackageFiles
from sciot_mqtt.models.cost import op_work
from sciot_mqtt.models.graph import TfliteGraph
from sciot_mqtt.models.manifest import Boundary, Manifest, OpInfo, TensorSpec, wire_dtype
from sciot_mqtt.models.reference import map_reference_layers

__all__ = ["CutModel", "cut_model"]


@dataclass(frozen=True, slots=True)
class CutModel:
    """A model read and described, ready to be written as a package."""

    graph: TfliteGraph
    model_bytes: bytes
    manifest: Manifest

    def write(self, files: PackageFiles) -> None:
        """Write the model, its sidecar, every segment and the manifest into ``files``."""
        graph = self.graph
        files.segments.mkdir()
        files.model.write_bytes(self.model_bytes)
        if self.manifest.metadata:
            files.sidecar.write_text(json.dumps(self.manifest.metadata, indent=1) + "\n")
        for i in range(graph.num_ops):
            seg_in, seg_out = graph.op_segment_io(i)
            files.op_segment(i).write_bytes(graph.cut(i, i + 1, seg_in, seg_out))
        for s in range(graph.num_ops):
            tail_in, tail_out = graph.tail_segment_io(s)
            files.tail_segment(s).write_bytes(graph.cut(s, graph.num_ops, tail_in, tail_out))
        # Last: a directory with a manifest is a complete package.
        files.manifest.write_text(json.dumps(self.manifest.to_dict(), indent=1) + "\n")


def cut_model(
    model_bytes: bytes, *, sha256: str, model_id: str, metadata: dict[str, Any]
) -> CutModel:
    """Read ``model_bytes`` and describe every operator and split point of it.

    ``metadata`` is the model's sidecar (stored as ``model.json`` and in the manifest).
    Raises ``UnsupportedModelError`` for a graph that cannot be split.
    """
    graph = TfliteGraph(model_bytes)
    names = _unique_names(graph)

    def spec(t: int) -> TensorSpec:
        info = graph.tensor(t)
        return TensorSpec(
            name=names[t],
            shape=info.shape,
            dtype=wire_dtype(info.dtype, names[t]),
            scale=info.scale,
            zero_point=info.zero_point,
            nbytes=info.nbytes,
            index=t,
        )

    mapping = map_reference_layers(
        [[graph.tensor(t).name for t in outs] for outs in graph.op_outputs]
    )
    profile = mapping[0] if mapping else None
    layer_ms = {la.name: la.ms for la in profile.layers} if profile else {}
    ops = []
    for i in range(graph.num_ops):
        seg_in, seg_out = graph.op_segment_io(i)
        layers = tuple(mapping[1][i]) if mapping else ()
        work = op_work(graph, i)
        ops.append(
            OpInfo(
                index=i,
                op=graph.op_names[i],
                inputs=tuple(seg_in),
                outputs=tuple(seg_out),
                reference_layers=layers,
                reference_ms=round(sum(layer_ms[n] for n in layers), 6) if profile else None,
                macs=work.macs,
                elements_in=work.elements_in,
                elements_out=work.elements_out,
            )
        )
    boundaries = []
    for s in range(graph.num_ops + 1):
        tail_in, tail_out = graph.tail_segment_io(s) if s < graph.num_ops else ([], [])
        boundaries.append(
            Boundary(
                index=s,
                tensors=[spec(t) for t in graph.live_at(s)],
                tail_inputs=tuple(tail_in),
                tail_outputs=tuple(tail_out),
            )
        )
    manifest = Manifest(
        model_id=model_id,
        sha256=sha256,
        model_bytes=len(model_bytes),
        ops=ops,
        boundaries=boundaries,
        inputs=[spec(t) for t in graph.inputs],
        outputs=[spec(t) for t in graph.outputs],
        reference=profile.id if profile else None,
        reference_device=profile.device if profile else None,
        metadata=metadata,
    )
    return CutModel(graph, model_bytes, manifest)


def _unique_names(graph: TfliteGraph) -> dict[int, str]:
    """Tensor names, made unique: TFLite does not promise unique (or any) names."""
    counts: dict[str, int] = {}
    for t in range(graph.num_tensors):
        n = graph.tensor(t).name
        counts[n] = counts.get(n, 0) + 1
    return {
        t: (
            graph.tensor(t).name
            if counts[graph.tensor(t).name] == 1
            else f"{graph.tensor(t).name}#{t}"
        )
        for t in range(graph.num_tensors)
    }
