"""The C int8 operators (firmware-bridge/ops) against LiteRT, bit for bit, on the zoo model.

Every operator on its own, every split's head and tail, and the whole model, for device
frames (the synthetic scenes the Python device sends) and one full-range noise tensor.
The C side runs through a ctypes library built from the same sources as the firmware's;
a sanitized build of the command-line driver repeats the whole model under ASan + UBSan.
"""

from __future__ import annotations

import ctypes
import itertools
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from sciot_mqtt.device.inputs import synthetic_images
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.runtime import SegmentRunner
from tests.firmware.conftest import (
    FIRMWARE,
    MODEL_E_ARENA,
    MODEL_E_ARG,
    MODEL_E_IO,
    MODEL_E_MAGIC,
    MODEL_E_MALFORMED,
    MODEL_E_TRUNCATED,
    MODEL_E_UNSUPPORTED,
    MODEL_E_VERSION,
    OPS,
    SIZE_MISMATCH,
    COps,
    Tensors,
    pack,
    unpack,
)


@pytest.fixture(scope="module")
def c_ops(sciot_ops_build: Path, fomo96_blob: Path, fomo96_package: ModelPackage) -> COps:
    return COps(sciot_ops_build / "libsciot_ops_py.so", fomo96_blob.read_bytes(), fomo96_package)


@pytest.fixture(scope="module")
def runner(fomo96_package: ModelPackage) -> SegmentRunner:
    return SegmentRunner(fomo96_package)


def _frames(package: ModelPackage) -> Iterator[tuple[str, np.ndarray]]:
    for k, image in enumerate(itertools.islice(synthetic_images(seed=11), 3)):
        yield f"scene{k}", package.quantize_input(image)
    # Every int8 value, including the extremes no camera frame quantizes to.
    noise = np.random.default_rng(6).integers(-128, 128, package.input.shape, dtype=np.int8)
    yield "noise", noise


@pytest.fixture(scope="module")
def litert_boundaries(
    fomo96_package: ModelPackage, runner: SegmentRunner
) -> dict[str, list[Tensors]]:
    """Per frame, LiteRT's tensors at every boundary 0..N (ops run one at a time)."""
    pkg = fomo96_package
    result = {}
    for name, frame in _frames(pkg):
        live: Tensors = {pkg.input.index: frame}
        bounds = [dict(live)]
        for s in range(1, pkg.num_ops + 1):
            head, _ = runner.run_head(s, frame)
            bounds.append({t.index: head[t.name] for t in pkg.boundaries[s].tensors})
        result[name] = bounds
    return result


def _assert_same(got: Tensors, want: Mapping[int, np.ndarray], what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: tensor sets differ"
    for index, value in got.items():
        expected = np.asarray(want[index]).reshape(value.shape)
        if not np.array_equal(value, expected):
            diff = value.astype(np.int32) - expected.astype(np.int32)
            pytest.fail(
                f"{what}: tensor {index} differs in {int(np.count_nonzero(diff))} of "
                f"{diff.size} elements (max |diff| {int(np.abs(diff).max())})"
            )


def test_blob_reader_sees_the_manifest(c_ops: COps, fomo96_package: ModelPackage) -> None:
    pkg = fomo96_package
    num_ops = ctypes.c_uint32()
    sha = ctypes.create_string_buffer(32)
    model_id = ctypes.create_string_buffer(32)
    assert c_ops.lib.sct_model_info(c_ops._blob, len(c_ops.blob), ctypes.byref(num_ops), sha,
                                    model_id) == 0  # fmt: skip
    assert num_ops.value == pkg.num_ops
    assert sha.raw.hex() == pkg.sha256
    assert model_id.value.decode() == pkg.model_id
    dtypes = {0: "int8", 1: "uint8", 2: "int16", 3: "int32", 4: "float32"}  # sciot_dtype
    for op in pkg.ops:
        assert c_ops.lib.sct_op_name(c_ops._blob, len(c_ops.blob), op.index).decode() == op.op
    for b in pkg.boundaries:
        fields = (ctypes.c_int32 * 9)()
        scale = ctypes.c_float()
        for k, t in enumerate(b.tensors):
            assert (
                c_ops.lib.sct_boundary_tensor(
                    c_ops._blob, len(c_ops.blob), b.index, k, fields, ctypes.byref(scale)
                )
                == 0
            )
            ndims = fields[2]
            assert fields[0] == t.index
            assert dtypes[fields[1]] == t.dtype
            assert tuple(fields[3 : 3 + ndims]) == t.shape
            assert fields[7] == t.nbytes
            assert fields[8] == t.zero_point
            assert scale.value == np.float32(t.scale)
        # One past the last tensor is refused.
        assert (
            c_ops.lib.sct_boundary_tensor(
                c_ops._blob, len(c_ops.blob), b.index, len(b.tensors), fields, ctypes.byref(scale)
            )
            == -1
        )


def test_every_operator_alone(
    c_ops: COps, fomo96_package: ModelPackage, litert_boundaries: dict[str, list[Tensors]]
) -> None:
    for name, bounds in litert_boundaries.items():
        for op in fomo96_package.ops:
            got = c_ops.run(op.index, op.index + 1, bounds[op.index])
            _assert_same(got, bounds[op.index + 1], f"{name}: op {op.index} ({op.op})")


def test_every_split_head_and_tail(
    c_ops: COps,
    fomo96_package: ModelPackage,
    runner: SegmentRunner,
    litert_boundaries: dict[str, list[Tensors]],
) -> None:
    pkg = fomo96_package
    n = pkg.num_ops
    out = pkg.output
    for name, bounds in litert_boundaries.items():
        frame = bounds[0]
        for s in pkg.split_points:
            head = c_ops.run(0, s, frame)
            _assert_same(head, bounds[s], f"{name}: head [0, {s})")
            tail = c_ops.run(s, n, head)
            litert_tail = runner.run_tail_outputs(
                s, {t.name: bounds[s][t.index] for t in pkg.boundaries[s].tensors}
            )
            _assert_same(tail, {out.index: litert_tail[out.name]}, f"{name}: tail [{s}, {n})")


def test_whole_model_and_detections(
    c_ops: COps, fomo96_package: ModelPackage, runner: SegmentRunner
) -> None:
    pkg = fomo96_package
    for name, frame in _frames(pkg):
        got = c_ops.run(0, pkg.num_ops, {pkg.input.index: frame})[pkg.output.index]
        want = runner.run_whole(frame)
        _assert_same({0: got}, {0: want}, f"{name}: whole model")
        if name.startswith("scene"):
            assert pkg.decode(got) == pkg.decode(want)


def test_middle_ranges_pass_tensors_through(
    c_ops: COps, fomo96_package: ModelPackage, litert_boundaries: dict[str, list[Tensors]]
) -> None:
    """Ranges inside a residual block: the skip tensor goes in, waits, and comes out."""
    bounds = litert_boundaries["scene0"]
    for start, stop in [(6, 8), (6, 9), (7, 7), (10, 17), (14, 20), (16, 16), (20, 25)]:
        _assert_same(c_ops.run(start, stop, bounds[start]), bounds[stop], f"[{start}, {stop})")


def test_per_operator_timer(
    c_ops: COps, fomo96_package: ModelPackage, litert_boundaries: dict[str, list[Tensors]]
) -> None:
    pkg = fomo96_package
    start, stop = 3, 11
    data = pack(pkg, start, litert_boundaries["scene1"][start])
    out_len = pkg.boundaries[stop].nbytes
    calls = (ctypes.c_uint32 * (3 * 32))()
    out = ctypes.create_string_buffer(out_len)
    arena = ctypes.create_string_buffer(c_ops.arena_size)
    n = c_ops.lib.sct_run_timed(c_ops._blob, len(c_ops.blob), start, stop, data, len(data), out,
                                out_len, arena, c_ops.arena_size, calls, 32)  # fmt: skip
    assert n == stop - start
    triples = [tuple(calls[3 * k : 3 * k + 3]) for k in range(n)]
    assert [op for op, _, _ in triples] == list(range(start, stop))
    # The fake clock ticks once per now(): start and end of each op, in order.
    assert [t for _, a, b in triples for t in (a, b)] == list(range(1, 2 * n + 1))
    _assert_same(unpack(pkg, stop, out.raw), litert_boundaries["scene1"][stop], "timed run")


def _run_io(
    c_ops: COps,
    start: int,
    stop: int,
    inputs: list[tuple[int, bytes]],
    outputs: list[tuple[int, int]],
    arena_len: int | None = None,
) -> tuple[int, dict[int, bytes]]:
    """sciot_model_run with io lists made up by the test: (index, data) in, (index, size) out."""
    u32 = ctypes.c_uint32
    data = b"".join(d for _, d in inputs)
    out_len = sum(n for _, n in outputs)
    out = ctypes.create_string_buffer(max(out_len, 1))
    arena_len = c_ops.arena_size if arena_len is None else arena_len
    arena = ctypes.create_string_buffer(max(arena_len, 1))
    rc = c_ops.lib.sct_run_io(
        c_ops._blob, len(c_ops.blob), start, stop,
        len(inputs), (u32 * 16)(*[i for i, _ in inputs]), (u32 * 16)(*[len(d) for _, d in inputs]),
        data,
        len(outputs), (u32 * 16)(*[i for i, _ in outputs]), (u32 * 16)(*[n for _, n in outputs]),
        out, arena, arena_len,
    )  # fmt: skip
    result, at = {}, 0
    for index, n in outputs:
        result[index] = out.raw[at : at + n]
        at += n
    return int(rc), result


def test_run_takes_boundary_tensors_in_any_order(
    c_ops: COps, fomo96_package: ModelPackage, litert_boundaries: dict[str, list[Tensors]]
) -> None:
    bounds = litert_boundaries["scene2"]
    # [9, 16): two tensors in (48, 51), two out (55, 58); given and asked for reversed.
    inputs = [(51, bounds[9][51].tobytes()), (48, bounds[9][48].tobytes())]
    outputs = [(t.index, t.nbytes) for t in reversed(fomo96_package.boundaries[16].tensors)]
    assert [i for i, _ in outputs] == [58, 55]
    rc, got = _run_io(c_ops, 9, 16, inputs, outputs)
    assert rc == 0
    for index, data in got.items():
        assert data == bounds[16][index].tobytes()


def test_run_refuses_wrong_io_and_small_arena(c_ops: COps, fomo96_package: ModelPackage) -> None:
    pkg = fomo96_package
    frame = next(_frames(pkg))[1].tobytes()
    n = pkg.num_ops
    b9 = {t.index: t.nbytes for t in pkg.boundaries[9].tensors}  # {48: 4608, 51: 4608}
    out10 = [(52, pkg.boundaries[10].nbytes)]
    good = [(48, bytes(b9[48])), (51, bytes(b9[51]))]
    assert _run_io(c_ops, 9, 10, good, out10)[0] == 0
    refused = {
        "a tensor missing": (good[:1], out10),
        "a tensor twice": ([good[0], good[0]], out10),
        "a tensor not live there": ([good[0], (49, bytes(24 * 24 * 48))], out10),
        "a short buffer": ([good[0], (51, bytes(b9[51] - 1))], out10),
        "an extra tensor": ([*good, (47, bytes(24 * 24 * 48))], out10),
        "an output not live at stop": (good, [(51, b9[51])]),
        "an output too small": (good, [(52, 100)]),
        "no output": (good, []),
    }
    for what, (inputs, outputs) in refused.items():
        assert _run_io(c_ops, 9, 10, inputs, outputs)[0] == MODEL_E_IO, what
    small = c_ops.arena_size - 1
    assert _run_io(c_ops, 9, 10, good, out10, arena_len=small)[0] == MODEL_E_ARENA
    # A range of no operators needs no arena: it only copies.
    assert _run_io(c_ops, 9, 9, good, [(48, b9[48]), (51, b9[51])], arena_len=0)[0] == 0
    # Ranges outside 0..N or backwards.
    assert _run_io(c_ops, 10, 9, [(52, bytes(b9[48]))], [(48, b9[48]), (51, b9[51])])[0] == (
        MODEL_E_ARG
    )
    assert _run_io(c_ops, 0, n + 1, [(0, frame)], [])[0] == MODEL_E_ARG
    # The concatenating shim refuses sizes that do not add up before calling the library.
    assert c_ops.run_raw(0, 5, frame[:-1], pkg.boundaries[5].nbytes)[0] == SIZE_MISMATCH


def _patched(blob: bytes, offset: int, value: bytes) -> bytes:
    return blob[:offset] + value + blob[offset + len(value) :]


def test_open_refuses_damaged_blobs(c_ops: COps) -> None:
    blob = c_ops.blob
    assert c_ops.open_error(blob) == 0
    assert c_ops.open_error(_patched(blob, 0, b"TFL3")) == MODEL_E_MAGIC
    assert c_ops.open_error(_patched(blob, 4, b"\x01\x00")) == MODEL_E_VERSION
    # Every truncation is caught (the header states the total length).
    for cut in range(0, len(blob), 97):
        assert c_ops.open_error(blob[:cut]) in (MODEL_E_TRUNCATED, MODEL_E_MALFORMED), cut
    off_ops = int.from_bytes(blob[24:28], "little")
    off_tensors = int.from_bytes(blob[20:24], "little")
    # An operator type the library does not know.
    assert c_ops.open_error(_patched(blob, off_ops, b"\x63")) == MODEL_E_UNSUPPORTED
    # An op input that names a tensor past the table.
    assert c_ops.open_error(_patched(blob, off_ops + 4, b"\xfe\xff")) == MODEL_E_MALFORMED
    # A tensor whose byte size disagrees with its shape.
    assert c_ops.open_error(_patched(blob, off_tensors + 20, b"\x01\x00\x00\x00")) == (
        MODEL_E_MALFORMED
    )
    # A requantization shift outside what the rounding is defined for: the first op's
    # per-channel shifts follow its multipliers.
    params = int.from_bytes(blob[off_ops + 36 : off_ops + 40], "little")
    plen = int.from_bytes(blob[off_ops + 40 : off_ops + 44], "little")
    assert c_ops.open_error(_patched(blob, params + plen // 2, (40).to_bytes(4, "little"))) == (
        MODEL_E_MALFORMED
    )
    # Random byte flips never crash the reader (they are either caught or harmless).
    rng = np.random.default_rng(1)
    for _ in range(300):
        at = int(rng.integers(0, len(blob)))
        c_ops.open_error(_patched(blob, at, bytes([int(rng.integers(0, 256))])))


def test_sanitized_driver_whole_model_and_splits(
    sciot_ops_sanitized_build: Path,
    fomo96_blob: Path,
    fomo96_package: ModelPackage,
    litert_boundaries: dict[str, list[Tensors]],
) -> None:
    """ASan + UBSan over real runs: no out-of-bounds access or UB, and the same bytes."""
    pkg = fomo96_package
    driver = sciot_ops_sanitized_build / "sciot_ops_run"
    bounds = litert_boundaries["noise"]
    for start, stop in [(0, pkg.num_ops), (0, 9), (9, 17), (17, pkg.num_ops), (6, 6)]:
        done = subprocess.run(
            [str(driver), str(fomo96_blob), str(start), str(stop)],
            input=pack(pkg, start, bounds[start]),
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        _assert_same(unpack(pkg, stop, done.stdout), bounds[stop], f"sanitized [{start}, {stop})")
    # A damaged blob is refused with a message, also under the sanitizers.
    damaged = fomo96_blob.with_name("damaged.bin")
    damaged.write_bytes(fomo96_blob.read_bytes()[:5000])
    done = subprocess.run(
        [str(driver), str(damaged), "0", "1"], input=b"", capture_output=True, check=False
    )
    assert done.returncode == 1
    assert b"truncated" in done.stderr


def test_sanitized_damaged_blobs_are_refused_or_run_in_bounds(
    sciot_ops_sanitized_build: Path, fomo96_blob: Path
) -> None:
    """Thousands of bit-flipped blobs: the reader refuses them or runs them without a single
    out-of-bounds access or undefined behaviour (ASan/UBSan exit with 86/87 otherwise)."""
    env = {"ASAN_OPTIONS": "exitcode=86", "UBSAN_OPTIONS": "exitcode=87:print_stacktrace=1"}
    driver = sciot_ops_sanitized_build / "sciot_ops_run"
    for seed in (1, 2):
        done = subprocess.run(
            [str(driver), "--damage", str(fomo96_blob), "3000", str(seed)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        found = re.fullmatch(r"3000 rounds, (\d+) accepted, (\d+) ran\n", done.stdout)
        assert found is not None, done.stdout
        # Flips in weights, scales or names are harmless, so some copies must get through
        # to a run: the run path was exercised, not just the refusals.
        assert int(found.group(2)) > 100


def test_run_refuses_boundaries_that_do_not_fit_the_ops(
    c_ops: COps, fomo96_package: ModelPackage, litert_boundaries: dict[str, list[Tensors]]
) -> None:
    """A blob whose boundary 9 lists tensor 49 instead of 51 (which ADD, op 9, reads): the
    run is refused rather than reading an arena slot nobody wrote."""
    pkg = fomo96_package
    blob = c_ops.blob
    assert [t.index for t in pkg.boundaries[9].tensors] == [48, 51]
    bounds_at = int.from_bytes(blob[28:32], "little")
    list_at = int.from_bytes(blob[bounds_at + 4 * 9 : bounds_at + 4 * 9 + 4], "little")
    damaged = _patched(blob, list_at + 4, (49).to_bytes(2, "little"))
    assert c_ops.open_error(damaged) == 0
    c_ops.set_blob(damaged)
    try:
        data = litert_boundaries["scene0"][9][48].tobytes() + bytes(24 * 24 * 48)
        rc, _ = c_ops.run_raw(9, 10, data, pkg.boundaries[10].nbytes)
        assert rc == MODEL_E_MALFORMED
    finally:
        c_ops.set_blob(blob)


# Soft-float helpers and the memory builtins GCC may call even in freestanding code.
_RV32_ALLOWED = re.compile(
    r"^(__[a-z0-9]+[sd]f[0-9]*|__[a-z0-9]+si[0-9]*|__[a-z]+di[0-9]*|memset|memcpy)$"
)


def test_kernels_cross_compile_for_rv32(tmp_path: Path) -> None:
    """ESP32-C3's ISA, no FPU, freestanding: -Werror clean, and no libc or libm calls."""
    gcc = shutil.which("riscv64-unknown-elf-gcc")
    nm = shutil.which("riscv64-unknown-elf-nm")
    if gcc is None or nm is None:
        pytest.skip("riscv64-unknown-elf-gcc missing: apt-get install gcc-riscv64-unknown-elf")
    flags = ["-march=rv32imc", "-mabi=ilp32", "-ffreestanding", "-std=c99", "-O2", "-Wall",
             "-Wextra", "-Werror", "-Wshadow", "-Wconversion", "-Wno-sign-conversion",
             f"-I{OPS / 'include'}", f"-I{OPS / 'src'}", f"-I{FIRMWARE / 'core/include'}",
             f"-I{FIRMWARE / 'generated'}"]  # fmt: skip
    undefined: set[str] = set()
    defined: set[str] = set()
    sources = sorted((OPS / "src").glob("*.c"))
    assert len(sources) > 5
    for source in sources:
        obj = tmp_path / f"{source.name}.o"
        done = subprocess.run(
            [gcc, *flags, "-c", str(source), "-o", str(obj)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for option, into in (("-u", undefined), ("--defined-only", defined)):
            symbols = subprocess.run(
                [nm, option, str(obj)], capture_output=True, text=True, check=True
            )
            into |= {line.split()[-1] for line in symbols.stdout.splitlines() if line.strip()}
    foreign = sorted(s for s in undefined - defined if not _RV32_ALLOWED.match(s))
    assert not foreign, f"kernels call outside libgcc: {foreign}"


@pytest.mark.parametrize("build", ["sciot_ops_build", "sciot_ops_sanitized_build"])
def test_kernel_unit_tests_pass(build: str, request: pytest.FixtureRequest) -> None:
    """The cmocka tests of firmware-bridge/ops/tests/test_kernels.c, plain and sanitized."""
    build_dir: Path = request.getfixturevalue(build)
    if not (build_dir / "test_ops_kernels").exists():
        pytest.skip("cmocka missing, unit tests not built: apt-get install libcmocka-dev")
    done = subprocess.run(
        ["ctest", "--test-dir", str(build_dir), "--output-on-failure"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100% tests passed" in done.stdout
