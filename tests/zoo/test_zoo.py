"""The zoo itself: each architecture converts to a batch-1, full-int8 graph with the
operators it is in the zoo for, and without the shape operators of a dynamic batch."""

from __future__ import annotations

import json

from sciot_mqtt.models.graph import TfliteGraph
from tests.zoo.builders import ZOO, ZooModels

SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}


def test_zoo_model_converts_with_its_operators(zoo_models: ZooModels, zoo_name: str) -> None:
    entry = ZOO[zoo_name]
    path = zoo_models.tflite(zoo_name)
    graph = TfliteGraph(path.read_bytes())
    ops = set(graph.op_names)
    assert entry.expected_ops <= ops, f"missing {entry.expected_ops - ops}"
    assert not ops & SHAPE_OPS, "the batch dimension was not fixed at 1"
    (inp,) = graph.inputs
    (out,) = graph.outputs
    assert graph.tensor(inp).shape[0] == 1 and graph.tensor(out).shape[0] == 1
    assert graph.tensor(inp).dtype == graph.tensor(out).dtype == entry.io_dtype
    if entry.io_dtype == "float32":
        assert graph.op_names[0] == "QUANTIZE" and graph.op_names[-1] == "DEQUANTIZE"
    # Every tensor between the ends is int8 (or int32 biases): a full-integer model.
    inner = {graph.tensor(t).dtype for outs in graph.op_outputs[1:-1] for t in outs}
    assert inner <= {"int8"}, inner
    sidecar = path.with_suffix(".json")
    assert sidecar.is_file() == bool(entry.sidecar)
    if entry.sidecar:
        assert json.loads(sidecar.read_text()) == entry.sidecar
