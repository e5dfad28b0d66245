#!/usr/bin/env bash
# The test command: on a fresh Debian machine (as root) installs what the tests need,
# installs evserve from this checkout into .venv-test (pip install .), and runs
# `cargo test`, the end-to-end tests against the installed `evserve` command, the
# multi-host harness (three hosts, nginx and a client in network namespaces; it skips with
# its reason where namespaces cannot be made), and the package smoke tests (install and
# serve on the oldest and newest supported Python).
# Exits non-zero on any failure.
#
#   scripts/test.sh              everything
#   scripts/test.sh -k framing   extra arguments go to the end-to-end pytest run only
#                                (the multi-host and package tests are skipped then)
set -euo pipefail
cd "$(dirname "$0")/.."

PYENV=/root/.pyenv/versions
BASE_PYTHON=$PYENV/3.11.7/bin/python3.11
if [ ! -x "$BASE_PYTHON" ]; then
    BASE_PYTHON=$(command -v python3)
fi
# Builds and venvs must see the base interpreter, never an active venv.
unset VIRTUAL_ENV PYTHONHOME
export PYO3_PYTHON="$BASE_PYTHON"
PIP_QUIET=(--quiet --disable-pip-version-check)
started=$SECONDS

step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - started))"; }

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
.venv-test/bin/python -m pip install "${PIP_QUIET[@]}" -r tests/requirements.txt

export PATH="$PATH:/usr/sbin:/sbin"  # nginx lives in /usr/sbin
if ! command -v nginx >/dev/null 2>&1; then
    step "installing nginx"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nginx >/dev/null
fi

# The Django admin check and the status page test take headless screenshots; without
# chromium they are skipped.
if [ ! -x /usr/bin/chromium ]; then
    step "installing chromium"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } ||
        echo "chromium could not be installed: the browser tests will be skipped"
fi

step "pip install . (into .venv-test)"
.venv-test/bin/python -m pip install "${PIP_QUIET[@]}" --force-reinstall --no-deps .
export EVSERVE_BIN="$PWD/.venv-test/bin/evserve"

step "cargo test"
cargo test --locked

step "cargo fmt --check, cargo clippy -D warnings"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

step "pytest tests/e2e"
.venv-test/bin/python -m pytest tests/e2e -p no:cacheprovider -rfEs "$@"

if [ $# -eq 0 ]; then
    step "pytest tests/multihost (hosts in network namespaces behind one nginx)"
    .venv-test/bin/python -m pytest tests/multihost -p no:cacheprovider -rfEs
fi

if [ $# -eq 0 ]; then
    step "pytest tests/package (install and serve on Python 3.10 and 3.13)"
    .venv-test/bin/python -m pytest tests/package -p no:cacheprovider -rfEs
fi
step "all tests passed"
