#!/usr/bin/env bash
# Check that every C/C++ source of firmware-bridge/ is formatted as firmware-bridge/.clang-format
# says, with clang-format 14 (Debian bookworm's `clang-format-14`; other versions format
# differently, so the binary is pinned; CLANG_FORMAT overrides it). Lists the files that are
# not and fails. The generated contract header is included: cgen's output is formatted too.
#
#   bash firmware-bridge/scripts/format-check.sh                 # check (CI: .ci/run)
#   bash firmware-bridge/scripts/format-check.sh --fix           # rewrite the files in place
#   bash firmware-bridge/scripts/format-check.sh --skip-missing  # exit 0 without clang-format
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
clang_format="${CLANG_FORMAT:-clang-format-14}"
mode=check
case "${1:-}" in
"") ;;
--fix) mode=fix ;;
--skip-missing) mode=check-if-present ;;
*)
    echo "usage: $0 [--fix | --skip-missing]" >&2
    exit 2
    ;;
esac

if ! command -v "$clang_format" >/dev/null; then
    if [ "$mode" = check-if-present ]; then
        echo "format-check: SKIPPED, $clang_format not found (apt-get install clang-format-14);" \
            "CI runs it"
        exit 0
    fi
    echo "format-check: $clang_format not found (apt-get install clang-format-14)" >&2
    exit 1
fi

case "$("$clang_format" --version)" in
*"version 14."*) ;;
*) echo "format-check: $clang_format is not clang-format 14; its output may differ" >&2 ;;
esac

# Sources only: build trees and the exported model arrays (port/esp-idf/main/model/) are not.
mapfile -t files < <(cd "$here" && find . \
    \( -name build -o -name 'build-*' -o -path ./port/esp-idf/main/model \) -prune -o \
    -type f \( -name '*.c' -o -name '*.h' -o -name '*.cc' -o -name '*.cpp' \) -print | sort)

if [ "$mode" = fix ]; then
    (cd "$here" && "$clang_format" --style=file -i "${files[@]}")
    echo "format-check: formatted ${#files[@]} files"
    exit 0
fi

unformatted=()
for f in "${files[@]}"; do
    if ! (cd "$here" && "$clang_format" --style=file --dry-run -Werror "$f" >/dev/null 2>&1); then
        unformatted+=("firmware-bridge/${f#./}")
    fi
done
if [ ${#unformatted[@]} -gt 0 ]; then
    echo "format-check: ${#unformatted[@]} of ${#files[@]} files are not formatted as" \
        "firmware-bridge/.clang-format says ($clang_format):" >&2
    printf '  %s\n' "${unformatted[@]}" >&2
    echo "fix: bash firmware-bridge/scripts/format-check.sh --fix" >&2
    exit 1
fi
echo "format-check: ${#files[@]} files formatted ($clang_format)"
