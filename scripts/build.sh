#!/usr/bin/env bash
# Builds target/release/evserve against a base CPython 3.11 (never a venv's python).
# Usage: scripts/build.sh [extra cargo args]
# Override the interpreter with PYO3_PYTHON=/path/to/python3.11.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    local candidate
    for candidate in "${PYO3_PYTHON:-}" /root/.pyenv/versions/3.11.*/bin/python3.11 python3.11 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        # A venv's python reports its base interpreter; build against that one.
        "$candidate" - <<'PY' 2>/dev/null && return 0
import os, sys, sysconfig
if sys.version_info[:2] != (3, 11) or not sysconfig.get_config_var("Py_ENABLE_SHARED"):
    sys.exit(1)
base = os.path.join(sys.base_prefix, "bin", "python3.11")
print(base if os.path.exists(base) else sys.executable)
PY
    done
    return 1
}

if ! python=$(find_python); then
    echo "scripts/build.sh: no CPython 3.11 built with --enable-shared found; set PYO3_PYTHON" >&2
    exit 1
fi
unset VIRTUAL_ENV
export PYO3_PYTHON="$python"
exec cargo build --release "$@"
