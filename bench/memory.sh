#!/usr/bin/env bash
# Memory of a Django + pandas app under evserve (with and without --preload) and gunicorn
# (with and without --preload), side by side in one run:
#
#   bench/memory.sh [--workers 4] [--requests 400] [--setups evserve,evserve-preload,gunicorn,gunicorn-preload]
#
# Makes the venv bench/.venv-memory (Django, pandas, gunicorn, and evserve installed from
# this checkout, rebuilt on every run), then runs bench/memory.py, which prints a Markdown
# table of PSS and RSS summed over each setup's processes.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PYTHON=${BENCH_PYTHON:-/root/.pyenv/versions/3.11.7/bin/python3.11}
VENV=$HERE/.venv-memory
unset VIRTUAL_ENV PYTHONHOME
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install django pandas gunicorn
pip install "$ROOT"
exec "$VENV/bin/python" "$HERE/memory.py" --bindir "$VENV/bin" "$@"
