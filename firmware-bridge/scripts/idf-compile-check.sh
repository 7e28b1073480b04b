#!/usr/bin/env bash
# The ESP-IDF port's compile check as CI runs it (.ci/run): against IDF_PATH (an ESP-IDF 5.x
# tree) and COMPONENTS (a folder holding esp-tflite-micro), for esp32c3 and esp32s3, with two
# models exported by `sciot-mqtt models export-c` (fomo96, and the non-FOMO classifier of
# tests/firmware/tiny_classifier.py) and both runners; then once more with a port file broken
# on purpose, which must fail. idf-compile-check.py does the work and says what it proves.
#
#   bash firmware-bridge/scripts/idf-compile-check.sh IDF_PATH COMPONENTS
#
# Installs what is missing: Debian's libnewlib-dev, clang-22 and ninja-build; the libstdc++ 12
# headers of libstdc++-arm-none-eabi-dev (its .deb unpacked, not installed: installing it
# would pull in a 440 MB compiler); esp-idf-kconfig<3 and pyparsing in a venv of their own.
# Everything it makes is in firmware-bridge/build-idf/.
set -euo pipefail
usage="usage: $0 IDF_PATH COMPONENTS"
idf=$(readlink -f "${1:?$usage}")
components=$(readlink -f "${2:?$usage}")
source "$(dirname "$0")/../../scripts/_venv.sh" # to the repository root; .venv; apt_install
apt_install cmake ninja-build gcc-riscv64-unknown-elf libnewlib-dev clang-22
.venv/bin/python -c 'import sciot_mqtt, tensorflow' 2>/dev/null || .venv/bin/python -m pip install -q -e '.[dev]'
work=$PWD/firmware-bridge/build-idf
mkdir -p "$work"

if ! ls -d "$work"/stdcxx/usr/include/newlib/c++/*/ >/dev/null 2>&1; then
    (
        cd "$work"
        rm -f libstdc++-arm-none-eabi-dev_*.deb
        apt-get download -q libstdc++-arm-none-eabi-dev >/dev/null 2>&1 ||
            { as_root apt-get update -qq && apt-get download -q libstdc++-arm-none-eabi-dev >/dev/null 2>&1; }
        dpkg-deb -x libstdc++-arm-none-eabi-dev_*.deb stdcxx
    )
fi
STDCXX_INC=$(ls -d "$work"/stdcxx/usr/include/newlib/c++/*/ | head -1)
export STDCXX_INC=${STDCXX_INC%/}
if ! "$work/venv/bin/python" -c 'import kconfgen, pyparsing' 2>/dev/null; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install -q 'esp-idf-kconfig<3' pyparsing
fi

models=$work/models
rm -rf "$models/fomo96" "$models/tiny_classifier"
.venv/bin/python -m sciot_mqtt models export-c fomo96 --out "$models/fomo96" --cache-dir "$work/cache"
[ -f "$models/tiny_classifier.tflite" ] ||
    .venv/bin/python -m tests.firmware.tiny_classifier "$models/tiny_classifier.tflite" >/dev/null 2>&1
.venv/bin/python -m sciot_mqtt models export-c "$models/tiny_classifier.tflite" \
    --out "$models/tiny_classifier" --cache-dir "$work/cache" >/dev/null

check=(python3 firmware-bridge/scripts/idf-compile-check.py --idf-path "$idf"
    --components "$components" --python "$work/venv/bin/python")
"${check[@]}" --model "$models/fomo96" --model "$models/tiny_classifier"
# hal_mqtt.c is the file that did not compile before this check existed.
"${check[@]}" --model "$models/fomo96" --runner tflm --break main/hal_mqtt.c
