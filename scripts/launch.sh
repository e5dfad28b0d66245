#!/usr/bin/env bash
# Serves APP from one instance per core behind nginx, with the installed evserve.
#
#   scripts/launch.sh APP [extra evserve flags...]
#   scripts/launch.sh examples/hello.py:app --max-body-size 10M
#
# Environment (all optional):
#   EVSERVE_LISTEN   where nginx listens              (default 127.0.0.1:8000)
#   EVSERVE_PORTS    instance ports FIRST-LAST         (default 8001 up, one per core)
#   EVSERVE_CONF     nginx config written by evserve   (default ./.evserve/nginx.conf)
#   EVSERVE_WAIT     seconds to wait for an answer     (default 60)
#   EVSERVE_BIN      the evserve command (default: evserve on PATH, else .venv/bin/evserve,
#                    which is made with `python3 -m venv .venv && pip install .` when missing)
#
# Waits (bounded) until nginx answers, prints where, then stays in the foreground:
# Ctrl-C or SIGTERM drains and stops everything; SIGHUP reloads the app.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
listen=${EVSERVE_LISTEN:-127.0.0.1:8000}
cores=$(nproc 2>/dev/null || echo 2)
ports=${EVSERVE_PORTS:-8001-$((8000 + cores))}
conf=${EVSERVE_CONF:-$PWD/.evserve/nginx.conf}
wait_secs=${EVSERVE_WAIT:-60}

if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    echo "launch.sh: nginx is not installed; install it with: apt-get install nginx" >&2
    exit 1
fi

evserve=${EVSERVE_BIN:-$(command -v evserve || true)}
if [[ -z $evserve ]]; then
    evserve=$repo/.venv/bin/evserve
    if [[ ! -x $evserve ]]; then
        echo "launch.sh: installing evserve into $repo/.venv (pip install .)..." >&2
        python3 -m venv "$repo/.venv"
        "$repo/.venv/bin/pip" install --quiet --disable-pip-version-check "$repo"
    fi
fi

mkdir -p "$(dirname "$conf")"
# Job control: the launcher gets its own process group, so a Ctrl-C here reaches it once,
# through the trap below, not twice (a second stop signal means "stop without draining").
set -m
"$evserve" --port-range "$ports" --nginx-conf "$conf" --listen "$listen" --nginx "$@" &
launcher=$!
trap 'kill -TERM "$launcher" 2>/dev/null || true' INT TERM
trap 'kill -HUP "$launcher" 2>/dev/null || true' HUP

url="http://$listen/"
# True once nginx answers an HTTP request on $listen (any status).
answers() {
    local reply
    exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}" 2>/dev/null || return 1
    printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$listen" >&3
    IFS= read -r -t 2 reply <&3 || true
    exec 3>&-
    [[ $reply == HTTP/* ]]
}
deadline=$((SECONDS + wait_secs))
until answers; do
    if ! kill -0 "$launcher" 2>/dev/null; then
        wait "$launcher" && status=0 || status=$?
        echo "launch.sh: evserve exited (code $status) before answering on $url" >&2
        exit "$status"
    fi
    if ((SECONDS >= deadline)); then
        echo "launch.sh: no answer on $url within ${wait_secs}s; stopping" >&2
        kill -TERM "$launcher" 2>/dev/null || true
        wait "$launcher" || true
        exit 1
    fi
    sleep 0.2
done

echo "launch.sh: serving $1 on $url (nginx -> instances on 127.0.0.1:$ports; config $conf)"
echo "launch.sh: evserve status shows the instances; Ctrl-C stops, kill -HUP $launcher reloads"
# `wait` returns early when a trapped signal arrives; keep waiting until the launcher exits.
status=0
while kill -0 "$launcher" 2>/dev/null; do
    wait "$launcher" && status=0 || status=$?
done
exit "$status"
