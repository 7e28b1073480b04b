"""``sciot-mqtt models build|split|list|export-c``.

``add_models_parser`` registers the commands on the main CLI's subparsers; each handler
takes the parsed namespace and returns an exit code (set as ``handler``, like the other
commands). Only ``build`` and ``split`` of a Keras file import TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sciot_mqtt.models.cache import CACHE_ENV, default_cache_dir, file_sha256
from sciot_mqtt.models.errors import ModelError
from sciot_mqtt.models.export.budget import DEFAULT_PSRAM_KIB, DEFAULT_RAM_RESERVE_KIB, Budget
from sciot_mqtt.models.graph import TfliteGraph
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.zoo import zoo_metadata, zoo_model_ids, zoo_model_path

__all__ = ["add_models_parser", "cmd_build", "cmd_export_c", "cmd_list", "cmd_split"]

_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def add_models_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("models", help="build, split and list split-computing models")
    sub = p.add_subparsers(dest="models_command", required=True)

    b = sub.add_parser("build", help="train and int8-quantize the fomo96 zoo model (TensorFlow)")
    b.add_argument(
        "--out",
        type=Path,
        default=Path("out/models/fomo96"),
        help="output directory for model.tflite + model.json (out/models/fomo96); "
        "sciot_mqtt/models/zoo/fomo96 refreshes the shipped model",
    )
    b.add_argument("--epochs", type=int, default=None, help="training epochs (10)")
    b.add_argument("--seed", type=int, default=None, help="dataset and training seed (0)")
    b.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    b.set_defaults(handler=cmd_build)

    s = sub.add_parser(
        "split",
        help="cut a model into per-op and tail segments (cached) and show its split points",
    )
    s.add_argument("path", type=Path, help="int8 .tflite, or a .keras/.h5 model to convert first")
    _add_cache_flag(s)
    s.add_argument("--model-id", help="id to record (model.json sidecar, else file stem)")
    s.add_argument(
        "--representative",
        type=Path,
        help="Keras only: .npy/.npz of float calibration samples, shape (N, *input_shape); "
        "without it, uniform noise over --input-range is used",
    )
    s.add_argument("--num-samples", type=int, default=100, help="calibration samples (100)")
    s.add_argument(
        "--input-range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="Keras only: float range of the model input (the sidecar's input_range, else 0 1)",
    )
    s.add_argument(
        "--tflite-out",
        type=Path,
        help="Keras only: where to write the int8 .tflite (default: next to the cache)",
    )
    s.add_argument("--json", action="store_true", help="print the manifest as JSON")
    s.set_defaults(handler=cmd_split)

    ls = sub.add_parser("list", help="zoo and cached models with op count, size, split points")
    _add_cache_flag(ls)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=cmd_list)

    ex = sub.add_parser(
        "export-c",
        help="write a model for the C firmware (per-op segments, the TFLM operators, the sciot "
        "model blob) and print its memory budget on ESP32 chips",
    )
    ex.add_argument("model", help="zoo or prepared model id (fomo96), or an int8 .tflite path")
    ex.add_argument("--out", type=Path, required=True, help="output directory")
    _add_cache_flag(ex)
    ex.add_argument(
        "--conv-rounding",
        choices=["auto", "double", "single", "ties-up"],
        default="auto",
        help="CONV_2D requantization rounding; auto (default) measures what LiteRT does on "
        "this machine, so that the C kernels match it bit for bit",
    )
    ex.add_argument(
        "--target",
        choices=["esp32s3-psram", "esp32s3", "esp32c3"],
        help="refuse (write nothing) unless some split point's head fits this chip's RAM "
        "(default: refuse only when no split point fits any of them)",
    )
    ex.add_argument(
        "--ram-reserve-kib",
        type=int,
        default=DEFAULT_RAM_RESERVE_KIB,
        help="internal RAM assumed taken by everything but tensors "
        f"({DEFAULT_RAM_RESERVE_KIB}; see sciot_mqtt/models/export/budget.py)",
    )
    ex.add_argument(
        "--psram-kib",
        type=int,
        default=DEFAULT_PSRAM_KIB,
        help=f"PSRAM of the ESP32-S3 module ({DEFAULT_PSRAM_KIB})",
    )
    ex.add_argument("--json", action="store_true", help="print the files and budget as JSON")
    ex.set_defaults(handler=cmd_export_c)


def _add_cache_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-cache",
        "--cache-dir",  # deprecated alias
        dest="model_cache",
        type=Path,
        help=f"prepared-model cache ({default_cache_dir()}; ${CACHE_ENV})",
    )


def _fail(message: str) -> int:
    print(f"sciot-mqtt models: {message}", file=sys.stderr)
    return 1


# -- build ------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    from sciot_mqtt.models.build import DEFAULT_EPOCHS, DEFAULT_SEED, build_zoo_model

    epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    seed = DEFAULT_SEED if args.seed is None else args.seed
    if epochs < 1:
        return _fail("--epochs must be at least 1")
    try:
        path = build_zoo_model(args.out, epochs=epochs, seed=seed, verbose=0 if args.quiet else 2)
    except ModelError as exc:
        return _fail(str(exc))
    meta = json.loads(path.with_suffix(".json").read_text())
    score = meta["score"]["int8"]
    print(
        f"{path}  {meta['bytes']} bytes, {meta['num_ops']} ops, int8 F1 {score['f1']:.3f} "
        f"(P {score['precision']:.3f} R {score['recall']:.3f} on {score['scenes']} scenes)"
    )
    return 0


# -- split ------------------------------------------------------------------------------


def _load_representative(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ModelError(f"representative data not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} as .npy/.npz: {exc}") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        if not loaded.files:
            raise ModelError(f"{path} holds no arrays")
        loaded = loaded[loaded.files[0]]
    return np.asarray(loaded, dtype=np.float32)


def _convert_keras(args: argparse.Namespace, root: Path) -> Path:
    from sciot_mqtt.models.build import convert_keras_to_int8

    # A sidecar next to the Keras file (labels, task, ...) goes with the converted model.
    sidecar = _read_json_object(args.path.with_suffix(".json"))
    input_range = args.input_range or sidecar.get("input_range") or [0.0, 1.0]
    if not (isinstance(input_range, list | tuple) and len(input_range) == 2):
        raise ModelError(f"input_range must be [LO, HI], got {input_range!r}")
    representative = _load_representative(args.representative) if args.representative else None
    out = args.tflite_out or root / "converted" / f"{file_sha256(args.path)}.tflite"
    convert_keras_to_int8(
        args.path,
        out,
        representative=representative,
        num_samples=args.num_samples,
        input_range=(float(input_range[0]), float(input_range[1])),
    )
    sidecar.update(
        model_id=args.model_id or sidecar.get("model_id") or args.path.stem,
        source=str(args.path),
        input_range=[float(v) for v in input_range],
        calibration=str(args.representative) if args.representative else "uniform noise",
    )
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(f"converted {args.path} -> {out}", file=sys.stderr)
    return out


def _read_json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelError(f"bad metadata file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: the sidecar must hold a JSON object")
    return data


def cmd_split(args: argparse.Namespace) -> int:
    path: Path = args.path
    root = args.model_cache or default_cache_dir()
    if not path.exists():
        return _fail(f"no such file: {path}")
    if path.is_dir():
        return _fail(f"{path} is a directory; give a .tflite, .keras or .h5 file")
    suffix = path.suffix.lower()
    try:
        if suffix in _KERAS_SUFFIXES:
            path = _convert_keras(args, root)
        elif suffix != ".tflite":
            return _fail(f"unsupported model file {path.name}: expected .tflite, .keras or .h5")
        elif args.representative:
            return _fail("--representative only applies to Keras models (.keras/.h5)")
        pkg = ModelPackage.prepare(path, root, model_id=args.model_id)
    except ModelError as exc:
        return _fail(str(exc))
    if args.json:
        manifest = pkg.manifest()
        manifest["directory"] = str(pkg.directory)
        manifest["task"] = pkg.task.to_dict()
        print(json.dumps(manifest, indent=1))
        return 0
    _print_package(pkg)
    return 0


def _print_package(pkg: ModelPackage) -> None:
    inp, out = pkg.input, pkg.output
    task = pkg.task
    print(f"model {pkg.model_id}  sha256 {pkg.sha256[:16]}  {pkg.model_bytes} bytes")
    print(f"  input  {inp.dtype}{list(inp.shape)} scale {inp.scale:.6g} zp {inp.zero_point}")
    print(f"         fed as {pkg.input_format.describe()}")
    print(f"  output {out.dtype}{list(out.shape)} scale {out.scale:.6g} zp {out.zero_point}")
    labels = f", labels {', '.join(task.labels)}" if task.labels else ""
    print(f"         read as {task.task.value} ({task.source}{labels})")
    print(f"  {pkg.num_ops} ops, split points 0..{pkg.num_ops}; segments in {pkg.directory}")
    chip_ms, how = _esp32s3_ms(pkg)
    print(f"  esp32s3 time: {sum(chip_ms):.1f} ms a run, {how}")
    print(f"  {'s':>3}  {'next op':<18} {'live':>4} {'bytes':>7}  {'esp32s3 [0,s)':>13}  layers")
    for b in pkg.boundaries:
        op = pkg.ops[b.index] if b.index < pkg.num_ops else None
        layers = ",".join(op.reference_layers) if op else "(end)"
        name = op.op if op else "-"
        head = sum(chip_ms[: b.index])
        print(
            f"  {b.index:>3}  {name:<18} {len(b.tensors):>4} {b.nbytes:>7}  {head:13.1f}  {layers}"
        )


def _esp32s3_ms(pkg: ModelPackage) -> tuple[list[float], str]:
    """Per-op ESP32-S3 times: measured when mapped, else estimated (``models.cost``)."""
    from sciot_mqtt.models.cost import estimate_ms, reference_rates

    measured = [op.reference_ms for op in pkg.ops]
    if pkg.reference_device == "esp32s3" and all(ms is not None for ms in measured):
        return [ms or 0.0 for ms in measured], f"measured per layer ({pkg.reference})"
    rates = reference_rates("esp32s3")
    return list(
        estimate_ms(pkg.ops, rates)
    ), f"ESTIMATED from each op's work; {rates.quality.describe()}"


# -- list -------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    root = args.model_cache or default_cache_dir()
    rows: list[dict[str, Any]] = []
    for model_id in zoo_model_ids():
        path = zoo_model_path(model_id)
        try:
            num_ops: int | None = TfliteGraph(path.read_bytes()).num_ops
        except ModelError:
            num_ops = None
        meta = zoo_metadata(model_id)
        rows.append(
            {
                "where": "zoo",
                "model_id": model_id,
                "sha256": file_sha256(path),
                "bytes": path.stat().st_size,
                "num_ops": num_ops,
                "split_points": None if num_ops is None else num_ops + 1,
                "int8_f1": meta.get("score", {}).get("int8", {}).get("f1"),
                "path": str(path),
            }
        )
    for pkg in ModelPackage.list_cached(root):
        rows.append(
            {
                "where": "cache",
                "model_id": pkg.model_id,
                "sha256": pkg.sha256,
                "bytes": pkg.model_bytes,
                "num_ops": pkg.num_ops,
                "split_points": pkg.num_ops + 1,
                "int8_f1": pkg.metadata.get("score", {}).get("int8", {}).get("f1"),
                "path": str(pkg.directory),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no models (zoo empty, nothing cached in {root})")
        return 0
    print(f"{'where':<6} {'model':<16} {'sha256':<12} {'bytes':>8} {'ops':>4} {'splits':>6}  path")
    for r in rows:
        ops = "?" if r["num_ops"] is None else str(r["num_ops"])
        splits = "?" if r["split_points"] is None else str(r["split_points"])
        print(
            f"{r['where']:<6} {r['model_id']:<16} {r['sha256'][:12]:<12} {r['bytes']:>8} "
            f"{ops:>4} {splits:>6}  {r['path']}"
        )
    if not (root.is_dir()):
        print(f"(cache {root} does not exist yet)")
    return 0


# -- export-c ---------------------------------------------------------------------------


def cmd_export_c(args: argparse.Namespace) -> int:
    from sciot_mqtt.models.catalog import resolve_package
    from sciot_mqtt.models.export import ROUNDINGS, detect_conv_rounding, export_c
    from sciot_mqtt.models.export.budget import esp32_targets, memory_budget

    root = args.model_cache or default_cache_dir()
    target = Path(args.model)
    try:
        if target.suffix.lower() == ".tflite":
            if not target.is_file():
                return _fail(f"no such file: {target}")
            pkg = ModelPackage.prepare(target, root)
        else:
            pkg = resolve_package(args.model, root)
        if args.conv_rounding == "auto":
            rounding, how = detect_conv_rounding(pkg)
        else:
            rounding, how = ROUNDINGS[args.conv_rounding], f"given: {args.conv_rounding}"
        with tempfile.TemporaryDirectory() as scratch:
            # Written aside first: the budget needs the sizes, and a refusal writes nothing.
            files = export_c(pkg, scratch, rounding)
            budget = memory_budget(
                pkg,
                segments_bytes=_segments_bytes(pkg),
                blob_bytes=files.blob.stat().st_size if files.blob is not None else None,
                targets=esp32_targets(args.ram_reserve_kib, args.psram_kib),
            )
            refusal = _budget_refusal(budget, args.target)
            if refusal is not None:
                if args.json:
                    print(json.dumps({"refused": refusal, "budget": budget.to_dict()}, indent=1))
                else:
                    print(budget.table(), file=sys.stderr)
                return _fail(refusal)
            args.out.mkdir(parents=True, exist_ok=True)
            written = [Path(shutil.copyfile(p, args.out / p.name)) for p in files.all()]
    except ModelError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write to {args.out}: {exc}")
    warnings = _budget_warnings(budget, args.target)
    if args.json:
        print(
            json.dumps(
                {
                    "model_id": pkg.model_id,
                    "sha256": pkg.sha256,
                    "conv_rounding": how,
                    "files": {str(p): p.stat().st_size for p in written},
                    "blob_refused": files.blob_refused,
                    "budget": budget.to_dict(),
                    "warnings": warnings,
                },
                indent=1,
            )
        )
        return 0
    print(f"model {pkg.model_id}  sha256 {pkg.sha256[:16]}  CONV_2D rounding {how}")
    for path in written:
        print(f"{path}  {path.stat().st_size} bytes")
    if files.blob_refused is not None:
        print(
            "no sciot model blob (the ESP32's esp-tflite-micro runner needs none; "
            f"sciot-fw-host and SCIOT_RUNNER_SCIOT_OPS do):\n{files.blob_refused}"
        )
    print(budget.table())
    for warning in warnings:
        print(f"warning: {warning}")
    return 0


def _segments_bytes(pkg: ModelPackage) -> int:
    """Flash of the per-op segments: the .tflite bytes the C arrays hold."""
    return sum(pkg.op_segment_path(i).stat().st_size for i in range(pkg.num_ops))


def _budget_refusal(budget: Budget, target: str | None) -> str | None:
    targets = [target] if target else [t.name for t in budget.targets]
    if any(budget.fitting(t) for t in targets):
        return None
    smallest = min(b.head_arena for b in budget.splits if b.split > 0)
    ram = ", ".join(f"{t.name} {t.tensor_ram:,} B" for t in budget.targets if t.name in targets)
    return (
        f"{budget.model_id} does not fit: the smallest head arena (split 1) needs "
        f"{smallest:,} B of tensor RAM, more than {ram}"
    )


def _budget_warnings(budget: Budget, target: str | None) -> list[str]:
    """A device finishes locally when the service is gone: the whole model must fit too."""
    targets = [target] if target else [t.name for t in budget.targets]
    return [
        f"on {t} only split points {_ranges(budget.fitting(t))} fit; the whole model (split "
        f"{budget.splits[-1].split}, {budget.splits[-1].head_arena:,} B) does not, so a local "
        "run or a fallback fails there"
        for t in targets
        if budget.fitting(t) and not budget.whole_model_fits(t)
    ]


def _ranges(splits: list[int]) -> str:
    return (
        f"{splits[0]}..{splits[-1]}"
        if splits == list(range(splits[0], splits[-1] + 1))
        else (", ".join(map(str, splits)))
    )
