"""Memory budget of an exported model on ESP32 chips: flash, and RAM at every split point.

RAM, per split point ``s``: the **head arena**, the peak bytes of the tensors a device holds
while it runs operators ``[0, s)`` and until it has sent what is live at ``s``. Tensors are
placed by ``arena.place`` (largest first, lowest free offset over the tensor's lifetime, 16-byte
sizes), which is how TFLite Micro's ``GreedyMemoryPlanner`` lays out the non-persistent
("head") part of its arena for a model made of exactly those operators (the head segment);
``tests/firmware/test_budget.py`` checks the figure against TFLite Micro's own recording
allocator. At ``s = 0`` nothing runs: the figure is the input the device holds. Known slack,
not in the figure: TFLM's persistent allocations (tensor and node structs, each kernel's
data: about 14 KiB for fomo96 whole) and the scratch buffers some kernels ask for (TFLM's
reference MEAN: tens of bytes; esp-nn's optimized convolutions on the chip: more); a device
also needs the core's buffers (``sciot_device_memory``).

Targets: the RAM left for tensors is ESP-IDF's own figure for the internal SRAM its heap
manages (``components/heap/port/<chip>/memory_layout.c`` of ESP-IDF 5.5, the regions above
the ROM's) less a reserve for everything else the firmware keeps in internal RAM (IRAM code,
static data, Wi-Fi, lwIP, the TLS handshake, task stacks): that reserve is an assumption,
not measured here (``--ram-reserve-kib``). With PSRAM the tensors go there (the port's
``heap_caps_malloc(MALLOC_CAP_SPIRAM)``); the smallest ESP32-S3 module PSRAM, 2 MiB, is
assumed (``--psram-kib``). Flash: the segments (esp-tflite-micro runner) or the blob
(sciot_ops runner) against the 1500 KiB app partition of the port's partition table
(ESP-IDF's ``partitions_singleapp_large.csv``), which the firmware's code shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sciot_mqtt.models.export.arena import ArenaPlan, place
from sciot_mqtt.models.export.format import align
from sciot_mqtt.models.graph import TfliteGraph
from sciot_mqtt.models.package import ModelPackage

__all__ = [
    "APP_PARTITION_BYTES",
    "DEFAULT_PSRAM_KIB",
    "DEFAULT_RAM_RESERVE_KIB",
    "Budget",
    "SplitBudget",
    "Target",
    "esp32_targets",
    "head_arena",
    "memory_budget",
    "op_arena",
    "store_plan",
]

KIB = 1024
APP_PARTITION_BYTES = 1500 * KIB  # factory app, partitions_singleapp_large.csv
DEFAULT_RAM_RESERVE_KIB = 192
DEFAULT_PSRAM_KIB = 2048
# Internal SRAM ESP-IDF 5.5's heap manages (memory_layout.c): ESP32-S3 0x3FC88000-0x3FCF0000
# plus 0x3FCF0000-0x3FCF8000 (the default 32 KiB data cache leaves it to the heap); ESP32-C3
# 0x3FC80000-0x3FCE0000.
_S3_SRAM = (0x3FCF0000 - 0x3FC88000) + 0x8000
_C3_SRAM = 0x3FCE0000 - 0x3FC80000


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # esp32s3-psram, esp32s3, esp32c3
    tensor_ram: int  # bytes for tensors
    origin: str  # where the figure comes from


def esp32_targets(
    ram_reserve_kib: int = DEFAULT_RAM_RESERVE_KIB, psram_kib: int = DEFAULT_PSRAM_KIB
) -> list[Target]:
    reserve = ram_reserve_kib * KIB
    internal = "internal SRAM {} KiB (ESP-IDF memory_layout.c) less {} KiB reserve (assumed)"
    return [
        Target("esp32s3-psram", psram_kib * KIB, f"PSRAM {psram_kib} KiB (assumed module)"),
        Target("esp32s3", _S3_SRAM - reserve, internal.format(_S3_SRAM // KIB, ram_reserve_kib)),
        Target("esp32c3", _C3_SRAM - reserve, internal.format(_C3_SRAM // KIB, ram_reserve_kib)),
    ]


def head_arena(graph: TfliteGraph, split: int) -> int:
    """Peak bytes of the tensors held to run ops [0, split) and send what is live at split."""
    live = graph.live_at(split)
    sizes = {t: graph.tensor(t).nbytes for t in range(graph.num_tensors)}
    if split == 0:
        return sum(align(sizes[t]) for t in live)
    lifetimes: dict[int, tuple[int, int]] = {}
    for i in range(split):
        for t in graph.op_inputs[i]:
            if t in graph.inputs and not graph.is_constant(t):
                lifetimes.setdefault(t, (0, 0))
        for t in graph.op_outputs[i]:
            lifetimes.setdefault(t, (i, i))
    for i in range(split):
        for t in graph.op_inputs[i]:
            if t in lifetimes:
                lifetimes[t] = (lifetimes[t][0], max(lifetimes[t][1], i))
    for t in live:  # the head's outputs: held until sent
        first = lifetimes[t][0] if t in lifetimes else 0
        lifetimes[t] = (first, split - 1)
    return place(lifetimes, sizes).size


def store_plan(graph: TfliteGraph) -> ArenaPlan:
    """Offsets for every tensor live at some split point, sharing bytes between tensors never
    live at once: where the port's esp-tflite-micro runner keeps them between operators.
    Its size is the whole model's head arena (the last split point's)."""
    stored = {t for s in range(graph.num_ops + 1) for t in graph.live_at(s)}
    lifetimes = {t: (0, 0) for t in stored if t in graph.inputs}
    for i in range(graph.num_ops):
        for t in graph.op_outputs[i]:
            if t in stored:
                lifetimes.setdefault(t, (i, i))
    for i in range(graph.num_ops):
        for t in graph.op_inputs[i]:
            if t in lifetimes:
                lifetimes[t] = (lifetimes[t][0], max(lifetimes[t][1], i))
    for t in graph.outputs:
        lifetimes[t] = (lifetimes[t][0], graph.num_ops)
    return place(lifetimes, {t: graph.tensor(t).nbytes for t in lifetimes})


def op_arena(graph: TfliteGraph, op: int) -> int:
    """Bytes of the tensors of operator ``op`` alone: what one operator's interpreter plans."""
    tensors = {t for t in graph.op_inputs[op] if not graph.is_constant(t)}
    tensors |= set(graph.op_outputs[op])
    return sum(align(graph.tensor(t).nbytes) for t in tensors)


@dataclass(frozen=True, slots=True)
class SplitBudget:
    split: int
    next_op: str  # the operator the tail starts with; "-" at the end
    head_arena: int
    sent_bytes: int
    fits: dict[str, bool]  # target name -> head arena within its tensor RAM


@dataclass(frozen=True, slots=True)
class Budget:
    model_id: str
    segments_bytes: int  # flash of the esp-tflite-micro runner's model
    blob_bytes: int | None  # flash of the sciot_ops runner's model (None: no blob)
    tflm_op_arena: int  # the largest op_arena: the TFLM runner's arena, planned part
    tflm_store: int  # store_plan's size: the TFLM runner's live tensors
    targets: list[Target]
    splits: list[SplitBudget]

    def fitting(self, target: str) -> list[int]:
        """Split points whose head runs at least one operator and fits ``target``."""
        return [b.split for b in self.splits if b.split > 0 and b.fits[target]]

    def whole_model_fits(self, target: str) -> bool:
        return self.splits[-1].fits[target]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "method": "head arena: TFLM greedy planner over the head's tensors (budget.py)",
            "flash": {
                "segments_bytes": self.segments_bytes,
                "blob_bytes": self.blob_bytes,
                "app_partition_bytes": APP_PARTITION_BYTES,
            },
            "tflm_runner": {
                "store_bytes": self.tflm_store,
                "op_arena_bytes": self.tflm_op_arena,
            },
            "targets": [
                {"name": t.name, "tensor_ram_bytes": t.tensor_ram, "origin": t.origin}
                for t in self.targets
            ],
            "splits": [
                {
                    "split": b.split,
                    "next_op": b.next_op,
                    "head_arena_bytes": b.head_arena,
                    "sent_bytes": b.sent_bytes,
                    "fits": b.fits,
                }
                for b in self.splits
            ],
        }

    def table(self) -> str:
        port_need = self.tflm_store + self.tflm_op_arena
        blob = f"{self.blob_bytes:,} B" if self.blob_bytes is not None else "none"
        lines = [
            f"memory budget of {self.model_id} (sciot_mqtt/models/export/budget.py)",
            f"  flash: segments {self.segments_bytes:,} B (esp-tflite-micro runner), blob "
            f"{blob} (sciot_ops runner); app partition {APP_PARTITION_BYTES // KIB} KiB, "
            "shared with the firmware's code",
            f"  this port's esp-tflite-micro runner: live tensors {self.tflm_store:,} B + one "
            f"operator's arena {self.tflm_op_arena:,} B planned (+ TFLM's own data): "
            + ", ".join(
                f"{t.name} {'fits' if port_need <= t.tensor_ram else '-'}" for t in self.targets
            ),
            "  RAM for tensors:",
        ]
        lines += [
            f"    {t.name:<14} {t.tensor_ram // KIB:>5} KiB  {t.origin}" for t in self.targets
        ]
        names = [t.name for t in self.targets]
        lines.append(
            "  head arena: peak of the tensors held to run ops [0, s) and send the live ones,"
            " placed as TFLM's greedy planner does"
        )
        lines.append(
            f"  {'s':>3}  {'next op':<18} {'head arena':>10} {'sent':>8}  "
            + " ".join(f"{n:>13}" for n in names)
        )
        for b in self.splits:
            marks = " ".join(f"{'fits' if b.fits[n] else '-':>13}" for n in names)
            lines.append(
                f"  {b.split:>3}  {b.next_op:<18} {b.head_arena:>10,} {b.sent_bytes:>8,}  {marks}"
            )
        return "\n".join(lines)


def memory_budget(
    package: ModelPackage,
    *,
    segments_bytes: int,
    blob_bytes: int | None,
    targets: list[Target] | None = None,
) -> Budget:
    graph = TfliteGraph(package.model_path.read_bytes())
    targets = targets if targets is not None else esp32_targets()
    splits = []
    for s in package.split_points:
        arena = head_arena(graph, s)
        splits.append(
            SplitBudget(
                split=s,
                next_op=package.ops[s].op if s < package.num_ops else "-",
                head_arena=arena,
                sent_bytes=package.boundaries[s].nbytes,
                fits={t.name: arena <= t.tensor_ram for t in targets},
            )
        )
    return Budget(
        model_id=package.model_id,
        segments_bytes=segments_bytes,
        blob_bytes=blob_bytes,
        tflm_op_arena=max(op_arena(graph, i) for i in range(graph.num_ops)),
        tflm_store=store_plan(graph).size,
        targets=targets,
        splits=splits,
    )
