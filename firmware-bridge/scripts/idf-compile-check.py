#!/usr/bin/env python3
"""Compile check of the ESP-IDF port (port/esp-idf) against an ESP-IDF 5.x tree, offline.

For each target, model and runner: ESP-IDF's own CMake configure of a scratch copy of
firmware-bridge (real Kconfig and sdkconfig.h, the real component graph, include paths and
flags, IDF_COMPONENT_MANAGER=0), then every source of the app compiled with exactly the
flags the configure wrote to compile_commands.json, by the stand-ins in idf-toolchain/bin:
  esp32c3  Debian's riscv64-unknown-elf-gcc 12 -> real rv32 objects (checked: ELF32 RISC-V)
  esp32s3  Debian's clang-22 Xtensa front end, -fsyntax-only (no machine code)
Nothing links. One line per build, and one PASS/FAIL line per target.

  idf-compile-check.py --idf-path IDF --components DIR --python PY --model EXPORT_DIR...
      [--target esp32c3|esp32s3]... [--runner tflm|sciot_ops]... [--break FILE]

--model: a `sciot-mqtt models export-c` output directory (put where main/model/ would be);
a model without a sciot model blob is checked with the TFLM runner only. --components: the
directory holding esp-tflite-micro (EXTRA_COMPONENT_DIRS). --python: an interpreter with
'esp-idf-kconfig<3' and pyparsing. STDCXX_INC must name libstdc++ 12 headers (see
firmware-bridge/README.md). --break FILE (relative to port/esp-idf) appends a call to an
undeclared function to the scratch copy of FILE and passes only if every build then fails
on that file and on no other: the check's check.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRMWARE = HERE.parent
TOOLCHAIN = HERE / "idf-toolchain" / "bin"
# sdkconfig of each runner build; the sciot_ops build also compiles the TLS code (with
# stand-in PEM files: nothing is linked, so their content is never read).
RUNNERS = {
    "tflm": ["CONFIG_SCIOT_RUNNER_TFLM=y"],
    "sciot_ops": ["CONFIG_SCIOT_RUNNER_SCIOT_OPS=y", "CONFIG_SCIOT_TLS=y"],
}
COMPILERS = {
    "esp32c3": "riscv64-unknown-elf-gcc 12, rv32 objects",
    "esp32s3": "clang-22 --target=xtensa -fsyntax-only",
}
# CMake cannot probe a compiler that makes no objects: tell it what Espressif's GCC is.
S3_FORCED = [
    f"-DCMAKE_{lang}_{var}"
    for lang in ("C", "CXX")
    for var in ("COMPILER_ID_RUN=1", "COMPILER_ID=GNU", "COMPILER_VERSION=14.2.0",
                "COMPILER_FORCED=1", "STANDARD_COMPUTED_DEFAULT=17",
                "EXTENSIONS_COMPUTED_DEFAULT=ON")
] + ["-DCMAKE_ASM_COMPILER_ID_RUN=1", "-DCMAKE_ASM_COMPILER_ID=GNU"]  # fmt: skip
BROKEN = "\nvoid sciot_deliberately_broken(void);\nvoid sciot_deliberately_broken(void) { sciot_no_such_function(); }\n"  # noqa: E501


def main() -> int:
    args = parse_args()
    if not os.environ.get("STDCXX_INC"):
        print("idf-compile-check: set STDCXX_INC to libstdc++ 12 headers", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.update(IDF_PATH=str(args.idf_path), IDF_COMPONENT_MANAGER="0")
    env["PATH"] = os.pathsep.join([str(TOOLCHAIN), str(Path(args.python).parent), env["PATH"]])
    verdicts: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="idf-check-") as tmp:
        work = Path(tmp)
        fb = work / "fb"
        shutil.copytree(FIRMWARE, fb, ignore=shutil.ignore_patterns("build", "build-*"))
        port = fb / "port" / "esp-idf"
        (port / "certs").mkdir(exist_ok=True)
        for pem in ("ca.crt", "client.crt", "client.key"):
            (port / "certs" / pem).write_text("-----BEGIN STAND-IN-----\n")
        if args.break_file:
            with (port / args.break_file).open("a") as f:
                f.write(
                    BROKEN
                    if not args.break_file.endswith(".cc")
                    else BROKEN.replace("(void)", "()")
                )
        for target in args.target:
            ok = True
            for model in args.model:
                for runner in args.runner:
                    if runner == "sciot_ops" and not any(model.glob("*_model.c")):
                        print(f"  {target} {model.name} {runner}: skipped, no sciot model blob")
                        continue
                    ok &= build(args, env, work, port, target, model, runner)
            verdicts[target] = ok
    for target, ok in verdicts.items():
        word = ("FAILED as expected" if args.break_file else "PASS") if ok else "FAIL"
        print(f"idf-compile-check: {target}: {word} ({COMPILERS[target]}; IDF {args.idf_path})")
    return 0 if all(verdicts.values()) else 1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--idf-path", type=Path, required=True, help="an ESP-IDF 5.x tree")
    p.add_argument("--components", type=Path, required=True, help="has esp-tflite-micro")
    p.add_argument("--python", default=sys.executable, help="with esp-idf-kconfig<3")
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--target", action="append", choices=list(COMPILERS))
    p.add_argument("--runner", action="append", choices=list(RUNNERS))
    p.add_argument("--break", dest="break_file", help="port file to break (expect failure)")
    args = p.parse_args()
    args.target = args.target or list(COMPILERS)
    args.runner = args.runner or list(RUNNERS)
    args.idf_path, args.components = args.idf_path.resolve(), args.components.resolve()
    args.model = [m.resolve() for m in args.model]
    return args


def build(
    args: argparse.Namespace,
    env: dict[str, str],
    work: Path,
    port: Path,
    target: str,
    model: Path,
    runner: str,
) -> bool:
    """Configure and compile one (target, model, runner); True if it went as it should."""
    start = time.monotonic()
    shutil.rmtree(port / "main" / "model", ignore_errors=True)
    shutil.copytree(model, port / "main" / "model")
    build_dir = work / f"build-{target}"
    sdkconfig = work / f"sdkconfig.{target}"
    sdkconfig.unlink(missing_ok=True)  # regenerated from the defaults below
    variant = work / "variant.defaults"
    variant.write_text("\n".join(RUNNERS[runner]) + "\n")
    defaults = [port / "sdkconfig.defaults", variant]
    cmd = ["cmake", "-G", "Ninja", "-S", str(port), "-B", str(build_dir),
           f"-DIDF_TARGET={target}", "-DCOMPONENTS=main",
           f"-DEXTRA_COMPONENT_DIRS={args.components}", "-DPYTHON_DEPS_CHECKED=1",
           f"-DPYTHON={args.python}", f"-DSDKCONFIG={sdkconfig}",
           f"-DSDKCONFIG_DEFAULTS={';'.join(map(str, defaults))}"]  # fmt: skip
    if target == "esp32c3":
        cmd += ["-DCMAKE_C_COMPILER_WORKS=1", "-DCMAKE_CXX_COMPILER_WORKS=1"]
    else:
        cmd += S3_FORCED
    name = f"{target} {model.name} {runner}"
    configured = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if configured.returncode != 0:
        print(f"  {name}: ESP-IDF configure FAILED")
        print(indent((configured.stdout + configured.stderr).splitlines()[-30:]))
        return False
    # The build is the one asked for: Kconfig kept every setting of the variant.
    header = (build_dir / "config" / "sdkconfig.h").read_text()
    for line in RUNNERS[runner]:
        if f"#define {line.split('=')[0]} 1" not in header:
            print(f"  {name}: configure dropped {line} (sdkconfig.h)")
            return False
    entries = [
        e
        for e in json.loads((build_dir / "compile_commands.json").read_text())
        if Path(e["file"]).is_relative_to(work / "fb")
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda e: compile_unit(e, env, target), entries))
    failed = [(e, text) for e, (ok, text) in zip(entries, results, strict=True) if not ok]
    warned = [(e, text) for e, (ok, text) in zip(entries, results, strict=True) if ok and text]
    seconds = time.monotonic() - start
    if args.break_file:
        broken = str(port / args.break_file)
        ok = [e["file"] for e, _ in failed] == [broken]
        which = "only" if ok else "NOT only"
        print(f"  {name}: {len(entries)} files, {len(failed)} failed "
              f"({which} the broken {args.break_file}), {seconds:.0f} s")  # fmt: skip
        for e, why in failed:
            errors = [line for line in why.splitlines() if "error" in line] or why.splitlines()
            print(f"    FAIL {relative(e['file'], work)}\n{indent(errors[: 1 if ok else 25])}")
        return ok
    print(
        f"  {name}: {len(entries) - len(failed)} of {len(entries)} files compiled, {seconds:.0f} s"
    )
    for e, text in warned:
        print(f"    warnings in {relative(e['file'], work)}\n{indent(text.splitlines()[:10])}")
    for e, why in failed:
        print(f"    FAIL {relative(e['file'], work)}\n{indent(why.splitlines()[:25])}")
    return not failed and len(entries) > 0


def compile_unit(entry: dict[str, str], env: dict[str, str], target: str) -> tuple[bool, str]:
    """Re-run one compile command: whether it compiled, and what the compiler said."""
    argv = shlex.split(entry["command"])
    argv = [a for a in argv if a != "-fdiagnostics-color=always"]
    obj = Path(entry["directory"], argv[argv.index("-o") + 1])
    obj.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        argv, cwd=entry["directory"], env=env, capture_output=True, text=True, check=False
    )
    said = (done.stderr + done.stdout).strip()
    if done.returncode != 0:
        return False, said or f"exit {done.returncode}"
    if target == "esp32c3":
        header = obj.read_bytes()[:20]
        # ELF, 32-bit (class 1), e_machine 243 (RISC-V)
        if header[:5] != b"\x7fELF\x01" or int.from_bytes(header[18:20], "little") != 243:
            return False, f"{obj.name} is not an ELF32 RISC-V object"
    return True, said


def relative(path: str, work: Path) -> str:
    return str(Path(path).relative_to(work / "fb"))


def indent(lines: list[str]) -> str:
    return "\n".join("      " + line for line in lines)


if __name__ == "__main__":
    sys.exit(main())
