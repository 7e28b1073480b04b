# Sourced by scripts/up and scripts/test: a project-local virtualenv in .venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "need root for: $*" >&2; return 1
    fi
}

apt_install() {  # apt_install PACKAGE... (only what is missing)
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || { echo "please install: ${missing[*]}" >&2; return 1; }
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
if [ ! -x .venv/bin/python ]; then
    # Debian and Ubuntu ship venv separately from the interpreter.
    "$PYTHON" -m venv .venv 2>/dev/null || {
        rm -rf .venv
        apt_install "python3-venv" && "$PYTHON" -m venv .venv
    }
fi
.venv/bin/python -m pip install -q --upgrade pip
