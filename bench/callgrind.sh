#!/usr/bin/env bash
# Instructions per request of one server on one benchmark app, counted by callgrind:
# repeatable where wall-clock figures on this shared machine are not.
#
#   bench/callgrind.sh                          evserve, environ_app
#   bench/callgrind.sh bjoern hello             a peer (bjoern) and another app of bench/apps.py
#   SECONDS_MEASURED=20 bench/callgrind.sh      a longer measured window (default 10 s)
#   BROWSER_HEADERS=1 bench/callgrind.sh        requests with a browser's headers, as nginx
#                                               passes them on, instead of wrk's Host alone
#   PROXY_HEADERS=1 bench/callgrind.sh          requests with the three headers the generated
#                                               nginx configuration adds (X-Forwarded-*)
#
# The server runs under valgrind with instrumentation off until it has answered a warm-up
# load; then callgrind counts only the measured window. The server's calls into the app
# count the requests; the total per request is split into the app call (inclusive: the
# framework's own work) and the server's part (everything else, which includes iterating
# the response and its close()), then listed by object and by function (self cost).
# Needs valgrind and wrk (apt-get install valgrind wrk) and the bench venv for peers
# (bench/run.sh makes it). Output files stay in a temporary directory, printed at the end.
set -euo pipefail
cd "$(dirname "$0")"

server=${1:-evserve}
app=${2:-environ_app}
seconds=${SECONDS_MEASURED:-10}
port=${PORT:-9190}
evserve_bin=${EVSERVE_BIN:-.venv/bin/evserve}
work=$(mktemp -d /tmp/evserve-callgrind.XXXXXX)
out="$work/callgrind.out"

for tool in valgrind vgdb callgrind_annotate wrk curl; do
    command -v "$tool" >/dev/null || { echo "callgrind.sh: $tool is missing" >&2; exit 2; }
done

case "$server" in
    evserve) cmd=("$evserve_bin" --port "$port" "apps:$app") ;;
    bjoern) cmd=(.venv/bin/python peers.py bjoern "$app" "$port") ;;
    *) echo "callgrind.sh: server is evserve or bjoern, not $server" >&2; exit 2 ;;
esac
headers=()
if [ "${PROXY_HEADERS:-0}" = 1 ]; then
    headers=(
        -H "X-Forwarded-For: 127.0.0.1"
        -H "X-Forwarded-Proto: http"
        -H "X-Forwarded-Host: 127.0.0.1"
    )
fi
if [ "${BROWSER_HEADERS:-0}" = 1 ]; then
    headers=(
        -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
        -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        -H "Accept-Language: en-US,en;q=0.5"
        -H "Accept-Encoding: gzip, deflate, br, zstd"
        -H "Cookie: sessionid=0123456789abcdef; csrftoken=fedcba9876543210"
        -H "Upgrade-Insecure-Requests: 1"
        -H "Sec-Fetch-Dest: document"
        -H "Sec-Fetch-Mode: navigate"
        -H "Sec-Fetch-Site: none"
        -H "X-Real-IP: 203.0.113.7"
        -H "X-Forwarded-For: 203.0.113.7"
        -H "X-Forwarded-Proto: https"
    )
fi
path=$(.venv/bin/python -c "import apps; print(apps.expected('$app')[1])" 2>/dev/null || echo /)

unset VIRTUAL_ENV  # the apps need only the standard library
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "${cmd[@]}" \
    >"$work/server.log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT

ready=0
for _ in $(seq 120); do  # up to 60 s: the interpreter starts slowly under valgrind
    if curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port$path"; then ready=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
done
if [ $ready = 0 ]; then
    echo "callgrind.sh: $server did not answer; its log:" >&2
    tail -20 "$work/server.log" >&2
    exit 1
fi

wrk -t1 -c10 -d3s "${headers[@]}" "http://127.0.0.1:$port$path" >/dev/null  # warm-up, not counted
# callgrind's monitor commands through vgdb, addressed by pid: callgrind_control finds its
# processes by their command line, which evserve's process title replaces.
control() { vgdb --pid=$pid "$@" >>"$work/vgdb.log" 2>&1; }
control instrumentation on
wrk -t1 -c10 -d"${seconds}s" "${headers[@]}" "http://127.0.0.1:$port$path" >"$work/wrk.txt"
control instrumentation off
control dump

wrk_requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
dump=$(ls "$out".* | head -1)
callgrind_annotate --threshold=100 "$dump" >"$work/annotate.txt" 2>/dev/null
callgrind_annotate --inclusive=yes --tree=calling --threshold=100 "$dump" \
    >"$work/tree.txt" 2>/dev/null
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$work/annotate.txt")

# The app part: the inclusive cost of the server's call into the app, and the number of
# those calls, which counts the requests exactly (wrk leaves out those still in flight
# when it stops, which the server answers all the same).
case "$server" in
    # The call is pyo3's call_positional, or inlined into WsgiApp::call from pyo3's tuple.rs.
    evserve) caller='(PyCallArgs for \\(T0,T1\\)>::call_positional |types/tuple.rs:<evserve::wsgi::WsgiApp as evserve::server::App>::call$)'
             callee=':PyObject_Vectorcall ' ;;
    bjoern) caller=':wsgi_call_application '; callee=':PyObject_CallFunctionObjArgs ' ;;
esac
read -r app_cost requests < <(awk -v caller="$caller" -v callee="$callee" '
    / \*  / { inside = ($0 ~ caller); next }
    inside && / >   / && $0 ~ callee {
        cost = $1; gsub(",", "", cost); sum += cost
        if (match($0, /\(([0-9,]+)x\)/)) { n = substr($0, RSTART + 1, RLENGTH - 3); gsub(",", "", n); calls += n }
    }
    END { printf "%.0f %.0f\n", sum, calls }  # %d stops at 2^31 in mawk
' "$work/tree.txt")
if [ "${requests:-0}" -eq 0 ]; then
    echo "callgrind.sh: the call into the app was not found; counting wrk's requests" >&2
    requests=$wrk_requests
    app_cost=0
fi
echo "$server $app: $requests requests measured, $((total / requests)) instructions per request"
echo "  inside the app call: $((app_cost / requests)); the server's own part:" \
    "$(((total - app_cost) / requests))"
echo
echo "instructions per request, by object (self cost):"
# Lines of code inlined from another file may omit their object: it is their function's.
awk -v n="$requests" '
    FNR == 1 { on = 0 }
    /file:function/ { on = 1; next }
    /Auto-annotated source/ { on = 0; next }
    !on || $1 !~ /^[0-9,]+$/ { next }
    {
        count = $1; gsub(",", "", count)
        function_name = $NF; object = ""
        if (match($0, /\[[^]]*\]$/)) {
            object = substr($0, RSTART + 1, RLENGTH - 2); sub(/.*\//, "", object)
            function_name = $(NF - 1)
        }
        sub(/^[^:]*:/, "", function_name)
        if (NR == FNR) { if (object != "") of[function_name] = object; next }
        if (object == "") object = (function_name in of) ? of[function_name] : "other"
        per[object] += count / n
    }
    END { for (o in per) if (per[o] >= 50) printf "%8.0f  %s\n", per[o], o }
' "$work/annotate.txt" "$work/annotate.txt" | sort -rn
echo
echo "instructions per request, by function (self cost; inlined code is listed under the"
echo "source file it came from):"
awk -v n="$requests" '
    /file:function/ { on = 1; next }
    /Auto-annotated source/ { exit }
    on && $1 ~ /^[0-9,]+$/ {
        count = $1; gsub(",", "", count)
        name = $0
        sub(/^ *[0-9,]+ +(\([^)]*\) +)?/, "", name)  # the count and its share
        sub(/^[^:]*:/, "", name)                      # the source file
        sub(/ \[.*/, "", name)                        # the object file
        per[name] += count / n
    }
    END { for (f in per) if (per[f] >= 50) printf "%8.0f  %s\n", per[f], f }
' "$work/annotate.txt" | sort -rn | head -40
echo
echo "callgrind output and logs: $work"
