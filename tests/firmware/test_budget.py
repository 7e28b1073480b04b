"""The memory budget `models export-c` prints: head arenas as TFLite Micro itself plans them,
the table and its JSON, a warning when only some split points fit, a refusal when none does.

TFLite Micro's Python interpreter (the `tflite-micro` package) allocates each head segment
with its RecordingMicroAllocator; its "head" allocation is the planned tensor memory the
budget computes, equal byte for byte, plus the scratch buffers some kernels ask for (of the
firmware's operator set, TFLM's reference MEAN: a few bytes per output element), which the
budget does not count.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sciot_mqtt.models.export.budget import (
    esp32_targets,
    head_arena,
    memory_budget,
    op_arena,
    store_plan,
)
from sciot_mqtt.models.graph import TfliteGraph
from sciot_mqtt.models.package import ModelPackage


def _tflm_planned_bytes(model: bytes, capfd: pytest.CaptureFixture[str]) -> int:
    """TFLM's own plan: the non-persistent ("head") part of its arena for ``model``."""
    runtime = pytest.importorskip(
        "tflite_micro.python.tflite_micro.runtime", reason="tflite-micro is x86_64 only"
    )
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=4 << 20)
    capfd.readouterr()
    interpreter.print_allocations()  # MicroPrintf: C stdio, to stderr
    ctypes.CDLL(None).fflush(None)
    found = re.search(r"Arena allocation head (\d+) bytes", capfd.readouterr().err)
    assert found is not None
    return int(found.group(1))


# Kernels of TFLM (reference kernels, as in the tflite-micro package) that ask for scratch
# memory in the planned part of the arena; budget.py's documented slack.
SCRATCH_KERNELS = {"MEAN"}
SCRATCH_SLACK = 1024


def _assert_plan(ours: int, tflm: int, ops: list[str], what: str) -> None:
    if SCRATCH_KERNELS.isdisjoint(ops):
        assert ours == tflm, what
    else:
        assert ours <= tflm <= ours + SCRATCH_SLACK, what


@pytest.mark.parametrize("model", ["fomo96", "tiny_classifier"])
def test_head_arena_is_tflite_micros_own_plan(
    model: str, request: pytest.FixtureRequest, capfd: pytest.CaptureFixture[str]
) -> None:
    package: ModelPackage = request.getfixturevalue(f"{model}_package")
    graph = TfliteGraph(package.model_path.read_bytes())
    inputs = [t for t in graph.inputs if not graph.is_constant(t)]
    names = [op.op for op in package.ops]
    for split in range(1, graph.num_ops + 1):
        head = graph.cut(0, split, inputs, graph.live_at(split))
        tflm = _tflm_planned_bytes(head, capfd)
        _assert_plan(head_arena(graph, split), tflm, names[:split], f"head of split {split}")
    for op in range(graph.num_ops):
        tflm = _tflm_planned_bytes(package.op_segment_path(op).read_bytes(), capfd)
        _assert_plan(op_arena(graph, op), tflm, names[op : op + 1], f"op {op}")
    # At split 0 nothing runs: the device holds the input.
    assert head_arena(graph, 0) == sum(-(-t.nbytes // 16) * 16 for t in package.inputs)


def _export(
    package: ModelPackage, out: Path, env: dict[str, str], *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sciot_mqtt", "models", "export-c", package.model_id, "--out",
         str(out), "--cache-dir", str(package.directory.parent), *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )  # fmt: skip


def test_export_c_prints_the_budget_and_its_json(
    tmp_path: Path, fomo96_package: ModelPackage, cli_env: dict[str, str]
) -> None:
    done = _export(fomo96_package, tmp_path / "txt", cli_env)
    assert done.returncode == 0, done.stderr
    assert "memory budget of fomo96" in done.stdout
    rows = re.findall(r"^\s+(\d+)\s+(\S+)\s+([\d,]+)\s+([\d,]+)\s+((?:fits|-)(?:\s+(?:fits|-))*)$",
                      done.stdout, re.M)  # fmt: skip
    graph = TfliteGraph(fomo96_package.model_path.read_bytes())
    assert [int(r[0]) for r in rows] == list(fomo96_package.split_points)
    for split, _, arena, sent, _ in rows:
        assert int(arena.replace(",", "")) == head_arena(graph, int(split))
        assert int(sent.replace(",", "")) == fomo96_package.boundaries[int(split)].nbytes

    done = _export(fomo96_package, tmp_path / "json", cli_env, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    budget = report["budget"]
    assert [t["name"] for t in budget["targets"]] == ["esp32s3-psram", "esp32s3", "esp32c3"]
    blob = tmp_path / "json" / "fomo96_model.bin"
    assert budget["flash"]["blob_bytes"] == blob.stat().st_size
    assert budget["flash"]["segments_bytes"] == sum(
        fomo96_package.op_segment_path(i).stat().st_size for i in range(fomo96_package.num_ops)
    )
    ram = {t["name"]: t["tensor_ram_bytes"] for t in budget["targets"]}
    for row in budget["splits"]:
        assert row["head_arena_bytes"] == head_arena(graph, row["split"])
        assert row["fits"] == {name: row["head_arena_bytes"] <= ram[name] for name in ram}
    assert str(blob) in report["files"]
    assert report["warnings"] == []


def test_only_some_split_points_fit_warns_about_the_fallback(
    tmp_path: Path, fomo96_package: ModelPackage, cli_env: dict[str, str]
) -> None:
    graph = TfliteGraph(fomo96_package.model_path.read_bytes())
    # 100 KiB for tensors on the C3: the heads up to split 3 fit, the whole model does not.
    reserve = 384 - 100
    fitting = [s for s in range(1, graph.num_ops + 1) if head_arena(graph, s) <= 100 * 1024]
    assert fitting == [1, 2, 3]
    done = _export(
        fomo96_package, tmp_path / "out", cli_env, "--target", "esp32c3",
        "--ram-reserve-kib", str(reserve),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: on esp32c3 only split points 1..3 fit" in done.stdout
    assert "a local run or a fallback fails there" in done.stdout


def test_a_model_that_fits_nowhere_is_refused_and_nothing_written(
    tmp_path: Path, fomo96_package: ModelPackage, cli_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    done = _export(fomo96_package, out, cli_env, "--target", "esp32c3", "--ram-reserve-kib", "384")
    assert done.returncode == 1
    assert "fomo96 does not fit" in done.stderr and "64,512 B" in done.stderr
    assert "esp32c3 0 B" in done.stderr
    assert not out.exists()
    # Without --target, only a model too big for every chip is refused.
    done = _export(fomo96_package, out, cli_env, "--psram-kib", "32", "--ram-reserve-kib", "448")
    assert done.returncode == 1, done.stdout
    assert not out.exists()


@pytest.mark.parametrize("model", ["fomo96", "tiny_classifier"])
def test_the_runners_store_never_overlaps_tensors_live_together(
    model: str, request: pytest.FixtureRequest
) -> None:
    package: ModelPackage = request.getfixturevalue(f"{model}_package")
    graph = TfliteGraph(package.model_path.read_bytes())
    plan = store_plan(graph)
    live = [set(graph.live_at(s)) for s in range(graph.num_ops + 1)]
    assert set(plan.offsets) == set().union(*live)
    assert plan.size == head_arena(graph, graph.num_ops)
    for op in range(graph.num_ops):
        # While op runs: what is live before and after it, its inputs and outputs.
        together = live[op] | live[op + 1]
        together |= {t for t in graph.op_inputs[op] + graph.op_outputs[op] if t in plan.offsets}
        spans = sorted(
            (plan.offsets[t], plan.offsets[t] + graph.tensor(t).nbytes) for t in together
        )
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"op {op}: overlapping tensors in the store"
        assert spans[-1][1] <= plan.size


def test_budget_figures_follow_the_targets(fomo96_package: ModelPackage) -> None:
    targets = esp32_targets(ram_reserve_kib=0, psram_kib=1)
    assert [t.tensor_ram for t in targets] == [1024, 448 * 1024, 384 * 1024]
    budget = memory_budget(fomo96_package, segments_bytes=1, blob_bytes=None, targets=targets)
    assert budget.fitting("esp32s3-psram") == []
    assert budget.fitting("esp32c3") == list(range(1, fomo96_package.num_ops + 1))
    assert budget.tflm_op_arena == max(
        op_arena(TfliteGraph(fomo96_package.model_path.read_bytes()), i)
        for i in range(fomo96_package.num_ops)
    )
