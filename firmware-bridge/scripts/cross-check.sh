#!/usr/bin/env bash
# Compile the portable core, the int8 operators and the ops adapter for a 32-bit microcontroller without an
# FPU or libc (ESP32-C3's ISA), warnings as errors. Compile only: nothing here links or runs.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cc="${RV32_CC:-riscv64-unknown-elf-gcc}"
if ! command -v "$cc" >/dev/null; then
    echo "cross-check: $cc not found (apt-get install gcc-riscv64-unknown-elf)" >&2
    exit 1
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
flags=(-march=rv32imc -mabi=ilp32 -ffreestanding -std=c99 -Wall -Wextra -Werror -pedantic
       -Wshadow -Wstrict-prototypes -Wmissing-prototypes -O2)
n=0
for src in "$here"/core/src/*.c; do
    "$cc" "${flags[@]}" -I"$here/core/include" -I"$here/generated" -I"$here/core/src" \
        -c "$src" -o "$out/core_$(basename "$src" .c).o"
    n=$((n + 1))
done
for src in "$here"/ops/src/*.c; do
    "$cc" "${flags[@]}" -I"$here/ops/include" -I"$here/ops/src" -I"$here/core/include" \
        -I"$here/generated" -c "$src" -o "$out/ops_$(basename "$src" .c).o"
    n=$((n + 1))
done
for src in "$here"/adapter/src/*.c; do
    "$cc" "${flags[@]}" -I"$here/adapter/include" -I"$here/core/include" -I"$here/generated" \
        -I"$here/ops/include" -c "$src" -o "$out/adapter_$(basename "$src" .c).o"
    n=$((n + 1))
done
echo "cross-check: $n files compiled for rv32imc/ilp32 with -Werror"
