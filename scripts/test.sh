#!/usr/bin/env bash
# The test command: on a fresh Debian machine (as root) installs what the tests need,
# builds evserve, and runs `cargo test` and the end-to-end tests. Exits non-zero on any failure.
#
#   scripts/test.sh              everything
#   scripts/test.sh -k framing   extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_PYTHON=/root/.pyenv/versions/3.11.7/bin/python3.11
if [ ! -x "$BASE_PYTHON" ]; then
    BASE_PYTHON=$(command -v python3)
fi
# Build and venv creation must see the base interpreter, never an active venv.
unset VIRTUAL_ENV PYTHONHOME
export PYO3_PYTHON="$BASE_PYTHON"

step() { printf '\n==> %s\n' "$*"; }

step "test venv .venv-test ($BASE_PYTHON)"
if [ ! -x .venv-test/bin/python ] || ! .venv-test/bin/python -c 'import sys; sys.exit(0)' 2>/dev/null; then
    rm -rf .venv-test
    if ! "$BASE_PYTHON" -m venv .venv-test; then
        # Debian's python3 keeps ensurepip in a separate package.
        rm -rf .venv-test
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$BASE_PYTHON" -m venv .venv-test
    fi
fi
printf '*\n' > .venv-test/.gitignore
.venv-test/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

export PATH="$PATH:/usr/sbin:/sbin"  # nginx lives in /usr/sbin
if ! command -v nginx >/dev/null 2>&1; then
    step "installing nginx"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nginx >/dev/null
fi

step "cargo build --release"
scripts/build.sh --locked
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export EVSERVE_BIN="$TARGET_DIR/release/evserve"

step "cargo test"
cargo test --locked

step "pytest tests/e2e"
exec .venv-test/bin/python -m pytest tests/e2e -p no:cacheprovider -rfEs "$@"
