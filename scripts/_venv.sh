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
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
fi

pip_install_once() {  # pip_install_once SPEC: only when missing or pyproject.toml changed
    local stamp=".venv/.installed-$(printf '%s' "$1" | tr -c 'A-Za-z0-9' '_')"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
    echo "installing $1 into .venv (first run, or pyproject.toml changed)..." >&2
    # Quiet, and pip's log only when it fails: nothing is left above what runs next.
    local log
    log="$(mktemp)"
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e "$1" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    echo "$want" >"$stamp"
}
