#!/usr/bin/env bash
# evserve's benchmark, runnable from a fresh clone:
#
#   bench/run.sh [--duration 5] [--rounds 3] [--only hello,echo] [--servers evserve,bjoern]
#                [--connections 50] [--warmup 1] [--quick] [--no-build]
#
# Installs what it needs (wrk, nginx, libev-dev and a C toolchain via apt-get;
# the bench venv bench/.venv with the peer servers, flask and matplotlib), installs
# evserve from this checkout into it (pip install, release build), then runs
# bench/bench.py, which writes bench/results/latest.md and bench/results/latest.png.
# --no-build uses the evserve already installed in bench/.venv (others may be compiling).
# EVSERVE_BIN_B=PATH adds a second evserve build, "evserve-b", to the same interleaved
# rounds (another wheel flavour, or an older binary that embeds Python).
# BENCH_METRICS=1 adds "evserve --metrics", the same build counting requests for Prometheus.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PYTHON311=${BENCH_PYTHON:-/root/.pyenv/versions/3.11.7/bin/python3.11}
VENV=$HERE/.venv
STATUS=$VENV/peer-status.tsv

# The venv and the build come from the plain interpreter, never an active venv.
unset VIRTUAL_ENV PYTHONHOME

build=1
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        *) args+=("$a") ;;
    esac
done

say() { printf 'bench: %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
dpkg -s libev-dev >/dev/null 2>&1 || missing+=(libev-dev)      # bjoern
command -v cc >/dev/null || missing+=(build-essential)          # bjoern, meinheld
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing ${missing[*]} and not root: install them with apt-get"
        command -v wrk >/dev/null || exit 1
    else
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
export PATH=$PATH:/usr/sbin

# --- bench venv and the peer servers ---------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    [ -x "$PYTHON311" ] || { say "no interpreter at $PYTHON311 (set BENCH_PYTHON)"; exit 1; }
    say "creating $VENV"
    "$PYTHON311" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
importable() { "$VENV/bin/python" -c "import $1" >/dev/null 2>&1; }

importable matplotlib || pip install matplotlib || { say "matplotlib failed: no chart"; }

: > "$STATUS.new"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$STATUS.new"; }
# flask and django are not servers: the flask and django scenarios' apps need them.
for peer in bjoern granian gunicorn waitress pyruvate flask django; do
    if importable "$peer"; then
        record "$peer" ok ""
    else
        say "installing $peer"
        log=$(mktemp)
        if pip install "$peer" >"$log" 2>&1; then
            record "$peer" ok ""
        else
            record "$peer" failed "pip install failed: $(grep -m1 -iE 'error:' "$log" | tr -s ' \t' ' ' | cut -c1-200)"
        fi
        rm -f "$log"
    fi
done

# meinheld 1.0.2 (its last release) pins greenlet<0.5, whose C code does not
# compile on CPython 3.11. meinheld itself does: build it without its pin,
# against a current greenlet.
meinheld_note="built with pip --no-deps against greenlet $("$VENV/bin/python" -c 'import greenlet; print(greenlet.__version__)' 2>/dev/null || echo '?'): its pinned greenlet<0.5 does not compile on CPython 3.11"
if importable meinheld; then
    record meinheld ok "$meinheld_note"
else
    say "installing meinheld"
    log=$(mktemp)
    if pip install meinheld >"$log" 2>&1; then
        record meinheld ok ""
    elif pip install greenlet setuptools >>"$log" 2>&1 &&
        pip install --no-deps --no-build-isolation meinheld >>"$log" 2>&1 && importable meinheld; then
        meinheld_note=${meinheld_note/greenlet \?/greenlet $("$VENV/bin/python" -c 'import greenlet; print(greenlet.__version__)')}
        record meinheld ok "$meinheld_note"
    else
        record meinheld failed "does not build on CPython 3.11: $(grep -m1 -E 'error:' "$log" | tr -s ' \t' ' ' | cut -c1-200)"
    fi
    rm -f "$log"
fi
mv "$STATUS.new" "$STATUS"

# --- evserve ----------------------------------------------------------------
export EVSERVE_BIN=${EVSERVE_BIN:-$VENV/bin/evserve}
if [ "$build" = 1 ]; then
    say "installing evserve into $VENV (pip install, release build)"
    if ! pip install --force-reinstall --no-deps "$ROOT"; then
        say "pip install of evserve failed: evserve is left out of this run"
        export EVSERVE_BIN=$VENV/bin/evserve-install-failed
    fi
fi

exec "$VENV/bin/python" "$HERE/bench.py" ${args[@]+"${args[@]}"}
