#!/usr/bin/env python3
"""evserve's benchmark: evserve side by side with other WSGI servers.

Run through bench/run.sh, which installs the venv, wrk and nginx and builds
evserve first. This script only measures:

  * every server of a scenario is started on its own port, pinned to one core
    (taskset -c 1), and waited for by connecting;
  * rounds are interleaved (A B C, A B C); wrk runs pinned to the other core
    (taskset -c 0) against 127.0.0.1 for a fixed duration;
  * the answer (status and body) is checked before and after every run;
  * the server's CPU time is the sum of utime+stime over its process tree,
    read from /proc before and after each run, divided by the requests wrk
    completed;
  * machine-wide kernel counters (cross-CPU interrupts, context switches,
    idle and softirq time) are kept per request with every run's raw figures;
  * the machine's own noise (bench/noise.py) is metered on both cores before
    and after the rounds, so that latency figures can be read against it;
  * a markdown table and a PNG chart are written to bench/results/.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
VENV_BIN = os.path.join(VENV, "bin")
VENV_PY = os.path.join(VENV_BIN, "python")
CLK_TCK = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, HERE)
import apps  # noqa: E402  (the harness computes the expected answers)
import noise  # noqa: E402

SERVER_CORES = "1"
WRK_CORES = "0"
# Several processes need both cores; wrk then shares core 0 with one of them,
# which costs little next to a 1 ms request.
MULTI_CORES = "0,1"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


# ---------------------------------------------------------------- servers


class Server:
    """How to start one server: its argv for a port and an app name."""

    def __init__(self, name, argv, processes=1, needs=None, static=False, env=None,
                 ready_line=None):
        self.name = name
        # A line the server logs once every process accepts. A launcher binds its port
        # before its instances are up, so a successful connect proves nothing: load sent
        # then lands on whichever instance came up first and keep-alive pins it there.
        self.ready_line = ready_line
        self.argv = argv  # function (port, app_name, workdir) -> list
        self.processes = processes
        self.needs = needs  # module or binary that must be present
        self.static = static  # answers without Python (the machine's limit)
        self.env = env or {}

    @property
    def cores(self):
        return SERVER_CORES if self.processes == 1 else MULTI_CORES


def evserve_bin():
    """evserve as installed in the bench venv (bench/run.sh installs it there)."""
    return os.environ.get("EVSERVE_BIN") or os.path.join(VENV, "bin", "evserve")


def evserve_b_bin():
    """A second evserve build measured in the same rounds as "evserve-b" (for instance
    another wheel flavour or an older commit), or None."""
    return os.environ.get("EVSERVE_BIN_B") or None


def _evserve_common(app):
    return ["--chdir", HERE, "apps:" + app]


def _gunicorn(worker_class, workers, extra=()):
    def argv(port, app, workdir):
        return [
            os.path.join(VENV_BIN, "gunicorn"),
            "-w", str(workers), "-k", worker_class, *extra,
            "-b", "127.0.0.1:%d" % port,
            "--chdir", HERE, "--log-level", "warning",
            "apps:" + app,
        ]  # fmt: skip

    return argv


def _granian(workers):
    def argv(port, app, workdir):
        return [
            os.path.join(VENV_BIN, "granian"),
            "--interface", "wsgi", "--no-ws",
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers),
            "--working-dir", HERE, "--log-level", "warning",
            "apps:" + app,
        ]  # fmt: skip

    return argv


def _peer(kind, processes=1):
    def argv(port, app, workdir):
        return [VENV_PY, os.path.join(HERE, "peers.py"), kind, app, str(port), str(processes)]

    return argv


def _nginx_static(port, app, workdir):
    """nginx answering without any app: the most this machine serves."""
    if app == "hello":
        location = 'location = / { default_type text/plain; return 200 "%s"; }' % (
            apps.HELLO_BODY.decode().replace("\n", "\\n")
        )
    else:  # too long for a return string: a file, kept open by open_file_cache
        with open(os.path.join(workdir, "body"), "wb") as f:
            f.write(apps.BIG_BODY)
        location = "location = /big { default_type text/plain; alias %s/body; }" % workdir
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            "user root;\n"  # the body lives in a private temp directory
            "worker_processes 1;\n"
            "pid %(w)s/nginx.pid;\n"
            "error_log %(w)s/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "  access_log off; sendfile on; open_file_cache max=16;\n"
            "  keepalive_requests 100000000;\n"
            "  client_body_temp_path %(w)s; proxy_temp_path %(w)s;\n"
            "  fastcgi_temp_path %(w)s; uwsgi_temp_path %(w)s; scgi_temp_path %(w)s;\n"
            "  server { listen 127.0.0.1:%(p)d; %(l)s }\n"
            "}\n" % {"w": workdir, "p": port, "l": location}
        )
    return ["nginx", "-p", workdir, "-c", conf, "-g", "daemon off;"]


def _evserve_one(port, app, workdir, binary=None):
    binary = binary or evserve_bin()
    return [binary, "--host", "127.0.0.1", "--port", str(port)] + _evserve_common(app)


def _evserve_metrics(port, app, workdir):
    """evserve counting every request for Prometheus (--metrics), access log off."""
    metrics_port = port + 1
    return _evserve_one(port, app, workdir) + ["--metrics", "127.0.0.1:%d" % metrics_port]


def _evserve_b(port, app, workdir):
    return _evserve_one(port, app, workdir, evserve_b_bin())


def _evserve_workers(port, app, workdir):
    return [
        evserve_bin(), "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
        "--control-socket", os.path.join(workdir, "control.sock"),
    ] + _evserve_common(app)  # fmt: skip


def _evserve_nginx(port, app, workdir):
    return [
        evserve_bin(),
        "--port-range", "%d-%d" % (port + 1, port + 2),
        "--nginx-conf", os.path.join(workdir, "evserve-nginx.conf"),
        "--nginx", "--listen", "127.0.0.1:%d" % port,
        "--control-socket", os.path.join(workdir, "control.sock"),
    ] + _evserve_common(app)  # fmt: skip


def _evserve_nginx_unix(port, app, workdir):
    # nginx's workers run as an unprivileged user: the sockets live in a directory they can
    # traverse, not in the harness's private one (stop_server removes it).
    sockdir = tempfile.mkdtemp(prefix="evserve-bench-sockets-")
    os.chmod(sockdir, 0o711)
    with open(os.path.join(workdir, "sockdir"), "w") as f:
        f.write(sockdir)
    return [
        evserve_bin(),
        "--workers", "2", "--socket-dir", os.path.join(sockdir, "s"),
        "--nginx-conf", os.path.join(workdir, "evserve-nginx.conf"),
        "--nginx", "--listen", "127.0.0.1:%d" % port,
        "--control-socket", os.path.join(workdir, "control.sock"),
    ] + _evserve_common(app)  # fmt: skip


def _proxied(kind, transport="tcp"):
    """Backends of `kind` behind the nginx text `evserve nginx-config` prints (proxied.py)."""

    def argv(port, app, workdir):
        return [VENV_PY, os.path.join(HERE, "proxied.py"), kind, app, str(port), workdir, transport]

    return argv


EVSERVE_ENV = {}

SINGLE = [
    Server("evserve", _evserve_one, needs="evserve", env=EVSERVE_ENV),
] + ([
    # A binary that embeds Python finds the apps' packages through VIRTUAL_ENV.
    Server("evserve-b", _evserve_b, needs="evserve-b", env={"VIRTUAL_ENV": VENV}),
] if evserve_b_bin() else []) + ([
    # The cost of --metrics: the same build with the counters reported (BENCH_METRICS=1).
    Server("evserve --metrics", _evserve_metrics, needs="evserve", env=EVSERVE_ENV),
] if os.environ.get("BENCH_METRICS") else []) + [
    Server("bjoern", _peer("bjoern"), needs="bjoern"),
    Server("granian", _granian(1), needs="granian"),
    Server("gunicorn-sync", _gunicorn("sync", 1), needs="gunicorn"),
    Server("gunicorn-gthread", _gunicorn("gthread", 1, ("--threads", "4")), needs="gunicorn"),
    Server(
        "waitress",
        lambda port, app, workdir: [
            os.path.join(VENV_BIN, "waitress-serve"),
            "--listen=127.0.0.1:%d" % port,
            "--threads=4",
            "apps:" + app,
        ],
        needs="waitress",
    ),
    Server("pyruvate", _peer("pyruvate"), needs="pyruvate"),
    Server("meinheld", _peer("meinheld"), needs="meinheld"),
    Server("nginx-static", _nginx_static, needs="nginx", static=True),
]

MULTI = [
    Server("evserve --workers 2", _evserve_workers, processes=2, needs="evserve", env=EVSERVE_ENV,
           ready_line="ready:"),
    Server("evserve + nginx (2)", _evserve_nginx, processes=2, needs="evserve", env=EVSERVE_ENV,
           ready_line="ready:"),
    Server("bjoern x2 reuse_port", _peer("bjoern", 2), processes=2, needs="bjoern"),
    Server("gunicorn -w 2", _gunicorn("sync", 2), processes=2, needs="gunicorn"),
    Server("granian --workers 2", _granian(2), processes=2, needs="granian"),
]

# The whole deployment on the machine's 2 cores, unpinned (wrk too). Every proxied setup
# sits behind the same generated nginx text, upstreams swapped.
DEPLOY = [
    Server("ceiling: nginx -> nginx tcp", _proxied("static"), processes=2, needs="nginx",
           static=True, ready_line="ready:"),
    Server("ceiling: nginx -> nginx unix", _proxied("static", "unix"), processes=2, needs="nginx",
           static=True, ready_line="ready:"),
    Server("evserve + nginx tcp", _evserve_nginx, processes=2, needs="evserve", env=EVSERVE_ENV,
           ready_line="ready:"),
    Server("evserve + nginx unix", _evserve_nginx_unix, processes=2, needs="evserve --socket-dir",
           env=EVSERVE_ENV, ready_line="ready:"),
    Server("bjoern x2 + nginx", _proxied("bjoern"), processes=2, needs="bjoern", ready_line="ready:"),
    Server("gunicorn -w 2 + nginx", _proxied("gunicorn"), processes=2, needs="gunicorn",
           ready_line="ready:"),
    Server("evserve --workers 2", _evserve_workers, processes=2, needs="evserve", env=EVSERVE_ENV,
           ready_line="ready:"),
    Server("bjoern x2 reuse_port", _peer("bjoern", 2), processes=2, needs="bjoern"),
    Server("granian --workers 2", _granian(2), processes=2, needs="granian"),
]
DEPLOY_PYTHON = [s for s in DEPLOY if not s.static]


# -------------------------------------------------------------- scenarios


class Scenario:
    def __init__(self, name, title, app, servers, wrk_args=(), script=None, cpu_target=None, needs=None,
                 floor=False, unpinned=False, baseline="bjoern"):
        self.name = name
        self.title = title
        self.app = app
        self.servers = servers
        self.wrk_args = list(wrk_args)
        self.script = script
        self.cpu_target = cpu_target  # evserve CPU/request relative to bjoern
        self.needs = needs  # module the app imports, installed into the bench venv
        # Also time the app called in-process with no server (floor.py): each server's
        # overhead is its CPU per request above that.
        self.floor = floor
        # Servers and wrk share both cores, as a deployment on this machine would.
        self.unpinned = unpinned
        # The server the ratio columns divide by.
        self.baseline = baseline


SINGLE_PYTHON = [s for s in SINGLE if not s.static]
SCENARIOS = [
    Scenario("hello", "14-byte hello, keep-alive", "hello", SINGLE, cpu_target=0.90),
    Scenario(
        "close",
        "14-byte hello, Connection: close",
        "hello",
        SINGLE,
        wrk_args=["-H", "Connection: close"],
        cpu_target=1.0,
    ),
    Scenario("big", "64 KiB response", "big", SINGLE, cpu_target=0.75),
    Scenario(
        "echo",
        "POST 4 KiB, echoed",
        "echo",
        SINGLE_PYTHON,
        script=os.path.join(HERE, "wrk", "echo.lua"),
        cpu_target=0.85,
    ),
    Scenario("environ", "reads ~20 environ keys", "environ_app", SINGLE_PYTHON, cpu_target=0.85),
    Scenario("token", "~1 ms CPU (HMAC/HKDF token), 1 and 2 processes", "token", SINGLE_PYTHON + MULTI),
    Scenario("flask", "Flask hello route, keep-alive", "flask_hello", SINGLE_PYTHON, needs="flask", floor=True),
    Scenario("django", "Django view, keep-alive", "django_view", SINGLE_PYTHON, needs="django", floor=True),
    Scenario("deploy-hello", "whole deployment on 2 cores, hello", "hello", DEPLOY, unpinned=True,
             baseline="ceiling: nginx -> nginx tcp"),
    Scenario("deploy-django", "whole deployment on 2 cores, Django view", "django_view", DEPLOY_PYTHON,
             needs="django", unpinned=True, baseline="bjoern x2 reuse_port"),
    Scenario("deploy-token", "whole deployment on 2 cores, ~1 ms CPU token", "token", DEPLOY_PYTHON,
             unpinned=True, baseline="bjoern x2 reuse_port"),
]


# ------------------------------------------------------------ /proc reads


def _proc_table():
    """{pid: (ppid, utime+stime+cutime+cstime ticks)} for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue  # exited while we looked
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields[0] is state (field 3); ppid is field 4; utime..cstime are 14..17.
        table[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return table


def tree_pids(root, table=None):
    table = table if table is not None else _proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out, table


def tree_cpu_seconds(root):
    """CPU seconds of a process tree: live processes plus the children they reaped."""
    pids, table = tree_pids(root)
    return sum(table[p][1] for p in pids) / CLK_TCK


def tree_rss_kib(root):
    pids, _ = tree_pids(root)
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total, len(pids)


# ------------------------------------------------------- running servers


class Running:
    def __init__(self, server, port, proc, log_path, workdir):
        self.server = server
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.workdir = workdir
        self.idle_rss = None

    def logged(self, text):
        try:
            with open(self.log_path, errors="replace") as f:
                return any(text in line for line in f)
        except OSError:
            return False

    def log_tail(self, lines=3):
        try:
            with open(self.log_path, errors="replace") as f:
                text = [line.strip() for line in f if line.strip()]
        except OSError:
            return ""
        return " / ".join(text[-lines:])


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Ports:
    """Hands out blocks of free ports (a launcher needs port, port+1, port+2)."""

    def __init__(self, start):
        self.next = start

    def take(self):
        for _ in range(200):
            base = self.next
            self.next += 10
            if all(port_is_free(base + i) for i in range(3)):
                return base
        raise RuntimeError("no free ports near %d" % self.next)


def start_server(server, scenario, ports, logdir):
    port = ports.take()
    workdir = tempfile.mkdtemp(prefix="srv-", dir=logdir)
    argv = server.argv(port, scenario.app, workdir)
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONPATH"] = HERE
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(server.env)
    log_path = os.path.join(workdir, "server.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        ["taskset", "-c", MULTI_CORES if scenario.unpinned else server.cores] + argv,
        cwd=HERE,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, stopped as one
    )
    log.close()
    return Running(server, port, proc, log_path, workdir)


def wait_ready(run, timeout=START_TIMEOUT):
    """Connects until the port answers, the process exits, or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            return "exited with code %s: %s" % (run.proc.returncode, run.log_tail())
        if run.server.ready_line and not run.logged(run.server.ready_line):
            time.sleep(0.05)
            continue
        try:
            with socket.create_connection(("127.0.0.1", run.port), timeout=0.5):
                return None
        except OSError:
            time.sleep(0.05)
    return "not listening after %.0f s: %s" % (timeout, run.log_tail())


def stop_server(run):
    if run.proc.poll() is None:
        try:
            os.killpg(run.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            run.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(run.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            run.proc.wait(timeout=STOP_TIMEOUT)
    # Processes of the group that outlived the leader (workers of a launcher).
    try:
        os.killpg(run.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        with open(os.path.join(run.workdir, "sockdir")) as f:
            shutil.rmtree(f.read().strip(), ignore_errors=True)
    except OSError:
        pass
    # A child that left the group (a daemonising nginx) still names our workdir.
    for pid in _pids_naming(run.workdir):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _pids_naming(text):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def check_answer(port, app, attempts=1):
    """None if the server gives the expected status and body, else what went wrong."""
    method, path, body, want = apps.expected(app)
    problem = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            headers = {"Content-Type": "application/octet-stream"} if body else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            got = resp.read()
            if resp.status != 200:
                problem = "status %d" % resp.status
            elif got != want:
                problem = "body of %d bytes differs from the expected %d" % (len(got), len(want))
            else:
                return None
        except (OSError, http.client.HTTPException) as exc:
            problem = "%s: %s" % (type(exc).__name__, exc)
        finally:
            conn.close()
    return problem


# ------------------------------------------------------------------- wrk


def wrk_script(scenario, logdir):
    parts = []
    if scenario.script:
        with open(scenario.script) as f:
            parts.append(f.read())
    with open(os.path.join(HERE, "wrk", "report.lua")) as f:
        parts.append(f.read())
    path = os.path.join(logdir, "wrk-%s.lua" % scenario.name)
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path


def run_wrk(port, scenario, script, duration, connections):
    _, path, _, _ = apps.expected(scenario.app)
    argv = [
        "taskset", "-c", MULTI_CORES if scenario.unpinned else WRK_CORES, "wrk",
        "-t", "1", "-c", str(connections), "-d", "%gs" % duration,
        "--timeout", "5s", "--latency", "-s", script,
        *scenario.wrk_args,
        "http://127.0.0.1:%d%s" % (port, path),
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :]), None
    return None, "wrk failed (%d): %s" % (out.returncode, (out.stderr or out.stdout).strip()[-300:])


# ------------------------------------------------------------ benchmark


def available(server, peer_status):
    """None if the server can run here, else why not."""
    need = server.needs
    if need == "evserve":
        return None if os.access(evserve_bin(), os.X_OK) else "not installed in the bench venv"
    if need.startswith("evserve --"):
        if not os.access(evserve_bin(), os.X_OK):
            return "not installed in the bench venv"
        usage = subprocess.run([evserve_bin(), "--help"], capture_output=True, text=True).stdout
        flag = need.split(" ", 1)[1]
        return None if flag in usage else "this evserve has no %s" % flag
    if need == "evserve-b":
        return None if os.access(evserve_b_bin(), os.X_OK) else "EVSERVE_BIN_B is not executable"
    if need == "nginx":
        return None if _which("nginx") else "nginx not installed"
    return module_missing(need, peer_status)


def module_missing(need, peer_status):
    """None if the bench venv imports the module, else why not."""
    status = peer_status.get(need)
    if status and not status["ok"]:
        return status["note"]
    probe = subprocess.run([VENV_PY, "-c", "import " + need], capture_output=True, text=True)
    if probe.returncode != 0:
        return "not importable: " + probe.stderr.strip().splitlines()[-1]
    return None


def _which(name):
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def run_scenario(scenario, args, ports, logdir, peer_status, notes):
    print("\n== %s: %s" % (scenario.name, scenario.title), flush=True)
    servers = [
        s for s in scenario.servers if not args.servers or any(s.name.startswith(t) for t in args.servers)
    ]
    running, result = [], {}
    try:
        for server in servers:
            why = available(server, peer_status)
            if why:
                notes.setdefault(server.name, why)
                print("  skip %-22s %s" % (server.name, why), flush=True)
                continue
            run = start_server(server, scenario, ports, logdir)
            problem = wait_ready(run) or check_answer(run.port, scenario.app, attempts=25)
            if problem:
                print("  skip %-22s %s" % (server.name, problem), flush=True)
                notes.setdefault(server.name + " / " + scenario.name, problem)
                stop_server(run)
                continue
            run.idle_rss = tree_rss_kib(run.proc.pid)
            running.append(run)
            result[server.name] = {
                "rounds": [],
                "idle_rss_kib": run.idle_rss[0],
                "processes": run.idle_rss[1],
                "static": server.static,
                "multi": server.processes > 1,
            }
        script = wrk_script(scenario, logdir)
        if args.warmup > 0:
            for run in running:
                run_wrk(run.port, scenario, script, args.warmup, args.connections)
        for rnd in range(args.rounds):
            for run in running:
                record = measure(run, scenario, script, args)
                result[run.server.name]["rounds"].append(record)
                print(
                    "  r%d %-22s %9.0f req/s  p99 %7.2f ms  cpu %7.1f us/req%s"
                    % (
                        rnd + 1,
                        run.server.name,
                        record.get("rps", 0),
                        record.get("p99_us", 0) / 1000,
                        record.get("cpu_us_per_req", 0),
                        "  !! " + record["problem"] if record.get("problem") else "",
                    ),
                    flush=True,
                )
    finally:
        for run in running:
            stop_server(run)
    return result


def measure_floor(scenario, rounds, notes):
    """The app's CPU per call with no server (floor.py), one timing per round, pinned to the
    servers' core; None if it could not run."""
    per_call = []
    for _ in range(max(rounds, 1)):
        out = subprocess.run(
            ["taskset", "-c", SERVER_CORES, VENV_PY, os.path.join(HERE, "floor.py"), scenario.app, "3"],
            cwd=HERE, capture_output=True, text=True, timeout=60,
            env=dict(os.environ, PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE="1"),
        )  # fmt: skip
        if out.returncode != 0:
            notes["floor / " + scenario.name] = (out.stderr or out.stdout).strip()[-200:]
            return None
        per_call.append(json.loads(out.stdout.strip().splitlines()[-1])["us_per_call"])
    floor = statistics.median(per_call)
    print("  floor %-22s %7.1f us/call (in-process, no server)" % (scenario.app, floor), flush=True)
    return floor


def floor_lines(scenario, summary, floor):
    """The overhead table of a framework scenario: CPU per request above the floor."""
    base = summary.get("bjoern")
    base_over = base["cpu_us"] - floor if base else None
    lines = [
        "Framework floor (the app called in-process with a canned environ, no server): "
        "%.1f µs per request. Overhead is CPU per request above it." % floor,
        "",
        "| server | CPU µs/req | overhead µs/req | overhead vs bjoern's |",
        "|---|---:|---:|---:|",
    ]
    for name, s in summary.items():
        over = s["cpu_us"] - floor
        lines.append("| %s | %.1f | %.1f | %s |" % (name, s["cpu_us"], over, fmt(ratio(over, base_over), ".2f")))
    return lines + [""]


def kernel_counters():
    """Machine-wide counters per core: cross-CPU interrupts, idle and softirq ticks."""
    out = {}
    with open("/proc/interrupts") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("CAL:", "RES:"):
                out[parts[0][:-1]] = [int(x) for x in parts[1 : 1 + (os.cpu_count() or 1)]]
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "ctxt":
                out["ctxt"] = [int(parts[1])]
            elif parts[0].startswith("cpu") and parts[0] != "cpu":
                out.setdefault("idle_ticks", []).append(int(parts[4]))
                out.setdefault("softirq_ticks", []).append(int(parts[7]))
    return out


def kernel_per_request(before, after, requests, seconds):
    """What a run cost the kernel: interrupts and switches per request, idle and softirq %."""
    diff = {k: [b - a for a, b in zip(before[k], after[k])] for k in before if k in after}
    out = {k: [round(d / requests, 4) for d in v] for k, v in diff.items() if not k.endswith("_ticks")}
    for k in ("idle_ticks", "softirq_ticks"):
        if k in diff:
            out[k.replace("_ticks", "_pct")] = [round(100.0 * d / (seconds * CLK_TCK), 1) for d in diff[k]]
    return out


def measure(run, scenario, script, args):
    record = {}
    problem = check_answer(run.port, scenario.app)
    if problem:
        if run.proc.poll() is not None:
            problem += " (server exited: %s)" % run.log_tail(2)
        return {"problem": "before the run: " + problem}
    cpu0 = tree_cpu_seconds(run.proc.pid)
    kernel0, started = kernel_counters(), time.monotonic()
    stats, problem = run_wrk(run.port, scenario, script, args.duration, args.connections)
    kernel1, seconds = kernel_counters(), time.monotonic() - started
    cpu1 = tree_cpu_seconds(run.proc.pid)
    if problem:
        return {"problem": problem}
    record.update(stats)
    requests = max(stats["requests"], 1)
    record["kernel"] = kernel_per_request(kernel0, kernel1, requests, seconds)
    record["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    record["cpu_s"] = cpu1 - cpu0
    record["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / requests
    errors = sum(stats[k] for k in stats if k.startswith("err_"))
    record["errors"] = errors
    after = check_answer(run.port, scenario.app)
    if after:
        record["problem"] = "after the run: " + after
    elif run.proc.poll() is not None:
        record["problem"] = "server exited during the run"
    return record


def summarize(rounds):
    good = [r for r in rounds if "rps" in r]
    if not good:
        return None
    total_req = sum(r["requests"] for r in good)
    return {
        "rps": statistics.median(r["rps"] for r in good),
        "p50_ms": statistics.median(r["p50_us"] for r in good) / 1000,
        "p99_ms": statistics.median(r["p99_us"] for r in good) / 1000,
        "cpu_us": sum(r["cpu_s"] for r in good) * 1e6 / max(total_req, 1),
        # Cores the server actually got: below its process count means it was
        # starved (by wrk, or by other work on the machine), not saturated.
        "cores": statistics.median(r["cpu_s"] / (r["duration_us"] / 1e6) for r in good),
        "errors": sum(r["errors"] for r in good),
        "problems": [r["problem"] for r in rounds if r.get("problem")],
        "runs": len(good),
    }


# --------------------------------------------------------------- report


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, spec):
    return format(x, spec) if x is not None else "–"


def target_checks(scenario, summary):
    """[(server, short text, long text, met)] for evserve's targets in one scenario."""
    checks = []
    base = summary.get("bjoern")
    if not base:
        return checks
    ev = summary.get("evserve")
    if ev and scenario.cpu_target is not None:
        r = ev["cpu_us"] / base["cpu_us"]
        checks.append(
            ("evserve", "CPU/req <= %.2f" % scenario.cpu_target,
             "%s: CPU/request %.3f x bjoern (target <= %.2f)" % (scenario.name, r, scenario.cpu_target),
             r <= scenario.cpu_target)
        )  # fmt: skip
    if ev:
        checks.append(
            ("evserve", "p99 <= bjoern",
             "%s: p99 %.2f ms vs bjoern %.2f ms (target: no worse)" % (scenario.name, ev["p99_ms"], base["p99_ms"]),
             ev["p99_ms"] <= base["p99_ms"])
        )  # fmt: skip
    if scenario.name == "token":
        for name in ("evserve --workers 2", "evserve + nginx (2)"):
            s = summary.get(name)
            if not s:
                continue
            r = s["rps"] / base["rps"]
            checks.append(
                (name, ">= 1.7x bjoern",
                 "token: %s %.2f x one bjoern process (target >= 1.7)" % (name, r), r >= 1.7)
            )  # fmt: skip
            for other in ("gunicorn -w 2", "granian --workers 2"):
                o = summary.get(other)
                if o:
                    checks.append(
                        (name, "> " + other,
                         "token: %s %.0f req/s vs %s %.0f req/s (target: more)" % (name, s["rps"], other, o["rps"]),
                         s["rps"] > o["rps"])
                    )  # fmt: skip
    return checks


def _check(server, short, text, ok):
    return (server, short, text, ok)


def framework_checks(scenario, summary, floor):
    """evserve's overhead above the framework floor: at most 0.8x bjoern's, below every peer's."""
    ev = summary.get("evserve")
    if not (ev and floor):
        return []
    over = ev["cpu_us"] - floor
    checks = []
    for name, s in summary.items():
        if name.startswith("evserve"):
            continue
        peer_over = s["cpu_us"] - floor
        limit = 0.8 if name == "bjoern" else 1.0
        ok = over <= limit * peer_over if name == "bjoern" else over < peer_over
        checks.append(_check(
            "evserve", "overhead %s %s" % ("<= 0.8x" if name == "bjoern" else "<", name),
            "%s: overhead above the floor %.1f µs vs %s %.1f µs (target %s)"
            % (scenario.name, over, name, peer_over, "<= 0.8x" if name == "bjoern" else "below"),
            ok))  # fmt: skip
    return checks


def deploy_checks(scenario, summary, one_bjoern_rps):
    """The deployment targets: hello against the ceiling, token against bjoern, Django
    against every peer setup."""
    checks = []
    get = summary.get
    if scenario.name == "deploy-hello":
        for transport in ("tcp", "unix"):
            ev, ceiling = get("evserve + nginx " + transport), get("ceiling: nginx -> nginx " + transport)
            if ev and ceiling:
                r = ev["rps"] / ceiling["rps"]
                checks.append(_check("evserve + nginx " + transport, ">= 0.95x ceiling",
                                     "deploy-hello: evserve + nginx %s %.2f x the ceiling (target >= 0.95)"
                                     % (transport, r), r >= 0.95))  # fmt: skip
    workers = get("evserve --workers 2")
    if scenario.name == "deploy-hello" and workers:
        for peer, factor in (("bjoern x2 reuse_port", 1.0), ("granian --workers 2", 1.0)):
            p = get(peer)
            if p:
                r = workers["rps"] / p["rps"]
                checks.append(_check("evserve --workers 2", ">= %s" % peer,
                                     "deploy-hello: --workers 2 %.2f x %s (target >= %.1f)" % (r, peer, factor),
                                     r >= factor))  # fmt: skip
    if scenario.name == "deploy-token":
        reuse = get("bjoern x2 reuse_port")
        for name in ("evserve --workers 2", "evserve + nginx tcp", "evserve + nginx unix"):
            s = get(name)
            if not s:
                continue
            if one_bjoern_rps:
                r = s["rps"] / one_bjoern_rps
                checks.append(_check(name, ">= 1.9x bjoern",
                                     "deploy-token: %s %.2f x one bjoern process (target >= 1.9)" % (name, r),
                                     r >= 1.9))  # fmt: skip
            if reuse:
                checks.append(_check(name, ">= bjoern x2",
                                     "deploy-token: %s %.0f req/s vs bjoern x2 reuse_port %.0f (target: at least)"
                                     % (name, s["rps"], reuse["rps"]), s["rps"] >= reuse["rps"]))  # fmt: skip
    if scenario.name == "deploy-django":
        ours = {n: s for n, s in summary.items() if n.startswith("evserve")}
        peers = {n: s for n, s in summary.items() if not n.startswith("evserve")}
        if ours and peers:
            best_name, best = max(ours.items(), key=lambda kv: kv[1]["rps"])
            top_name, top = max(peers.items(), key=lambda kv: kv[1]["rps"])
            best_p99 = min(p["p99_ms"] for p in peers.values())
            checks.append(_check(best_name, "ahead of every peer",
                                 "deploy-django: %s %.0f req/s vs the best peer %s %.0f (target: ahead)"
                                 % (best_name, best["rps"], top_name, top["rps"]), best["rps"] > top["rps"]))  # fmt: skip
            checks.append(_check(best_name, "p99 <= best peer's",
                                 "deploy-django: %s p99 %.2f ms vs the best peer p99 %.2f ms (target: no worse)"
                                 % (best_name, best["p99_ms"], best_p99), best["p99_ms"] <= best_p99))  # fmt: skip
    return checks


def target_cell(checks, server):
    return ", ".join(
        "%s %s" % (short, "met" if ok else "**missed**") for name, short, _, ok in checks if name == server
    )


def write_markdown(path, meta, results, notes):
    lines = [
        "# evserve benchmark",
        "",
        "Run %s on %s. wrk: 1 thread, %d connections, %g s per run, %d rounds interleaved, "
        "%g s warm-up. Servers pinned to core %s (two-process servers to cores %s), "
        "wrk to core %s; the deploy-* scenarios run unpinned, wrk too, on both cores. "
        "Load average at start: %s. Command: `%s`."
        % (
            meta["date"], meta["machine"], meta["connections"], meta["duration"], meta["rounds"],
            meta["warmup"], SERVER_CORES, MULTI_CORES, WRK_CORES, meta["load"], meta["command"],
        ),
        "",
        "CPU/req is the server process tree's utime+stime over the run divided by the requests "
        "completed: the cost that matters once the client saturates. Ratios are to bjoern in "
        "the same run. Figures are medians over rounds; CPU/req is total CPU over total requests. "
        "'cores used' is server CPU time over wall time: a two-process server below 2 did not get "
        "both cores (wrk and any other work on the machine share them).",
        "",
        "Versions: " + ", ".join("%s %s" % kv for kv in sorted(meta["versions"].items())) + ".",
        "",
    ]  # fmt: skip
    all_checks = []
    for scenario in SCENARIOS:
        if scenario.name not in results:
            continue
        summary = {n: summarize(r["rounds"]) for n, r in results[scenario.name].items()}
        for name, r in results[scenario.name].items():
            if summary[name] is None:  # started, but no run completed
                problems = sorted({x.get("problem", "no result") for x in r["rounds"]})
                notes.setdefault("%s / %s" % (name, scenario.name), "every run failed: " + "; ".join(problems))
        summary = {n: s for n, s in summary.items() if s}
        base = summary.get(scenario.baseline)
        vs = "vs " + scenario.baseline
        lines += [
            "## %s: %s" % (scenario.name, scenario.title),
            "",
            "| server | req/s | req/s %s | p50 ms | p99 ms | CPU µs/req | CPU/req %s | cores used | errors | target |" % (vs, vs),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        checks = target_checks(scenario, summary)
        floor = meta.get("floors", {}).get(scenario.name)
        checks += framework_checks(scenario, summary, floor)
        one_bjoern = (summarize(results.get("token", {}).get("bjoern", {}).get("rounds", [])) or {}).get("rps")
        checks += deploy_checks(scenario, summary, one_bjoern)
        all_checks += checks
        for name, s in summary.items():
            bold = "**" if name.startswith("evserve") else ""
            lines.append(
                "| %s%s%s | %.0f | %s | %.2f | %.2f | %.1f | %s | %.2f | %s | %s |"
                % (
                    bold, name, bold, s["rps"],
                    fmt(ratio(s["rps"], base and base["rps"]), ".2f"),
                    s["p50_ms"], s["p99_ms"], s["cpu_us"],
                    fmt(ratio(s["cpu_us"], base and base["cpu_us"]), ".2f"),
                    s["cores"],
                    s["errors"] if not s["problems"] else "%d; %s" % (s["errors"], "; ".join(s["problems"])),
                    target_cell(checks, name),
                )
            )  # fmt: skip
        if floor:
            lines += [""] + floor_lines(scenario, summary, floor)
        share = min(
            (s["cores"] / (2 if results[scenario.name][n]["multi"] else 1) for n, s in summary.items()),
            default=1.0,
        )
        # Only the CPU-bound scenario must saturate its servers; in the others the
        # client (wrk on one core) is often the limit, which is what CPU/req is for.
        if scenario.name == "token" and share < 0.8:
            lines += [
                "",
                "Caution: a server here got only %.2f of a core per process although every request "
                "needs ~1 ms of CPU: other work on the machine took the rest, so req/s ratios (above "
                "all across process counts) say more about the machine than about the servers; "
                "CPU/request still compares them." % share,
            ]
        lines.append("")
    rss = {}
    for scen in results.values():
        for name, r in scen.items():
            rss.setdefault(name, (r["idle_rss_kib"], r["processes"]))
    if rss:
        lines += [
            "## Idle memory",
            "",
            "VmRSS summed over the process tree right after start, before any load.",
            "",
            "| server | processes | idle RSS MiB |",
            "|---|---:|---:|",
        ]
        for name, (kib, procs) in rss.items():
            lines.append("| %s | %d | %.1f |" % (name, procs, kib / 1024))
        lines.append("")
        if "evserve" in rss and "bjoern" in rss:
            ev, bj = rss["evserve"][0] / 1024, rss["bjoern"][0] / 1024
            all_checks.append(
                ("evserve", "RSS", "idle RSS: evserve %.1f MiB vs bjoern %.1f MiB (target <= bjoern + 2)" % (ev, bj),
                 ev <= bj + 2)
            )  # fmt: skip
    if "noise_before" in meta:
        lines += [
            "## Machine noise",
            "",
            "Time each core spent away from a busy process that only reads the clock "
            "(bench/noise.py), metered with nothing else running before and after the rounds. "
            "A stall of a core delays every request in flight on it, whichever server runs, "
            "so the rounds' p99 figures vary with it.",
            "",
        ]
        for when in ("before", "after"):
            lines += ["- %s: %s" % (when, line) for line in noise.describe(meta.get("noise_" + when, {}))]
        lines.append("")
    lines += ["## Targets", ""]
    if all_checks:
        lines += ["- %s %s" % ("met:" if ok else "MISSED:", text) for _, _, text, ok in all_checks]
    else:
        lines.append("- not evaluated: evserve or bjoern did not run.")
    lines += ["", "## Not run", ""]
    if notes:
        lines += ["- %s: %s" % kv for kv in notes.items()]
    else:
        lines.append("- every server ran.")
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_chart(path, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = []  # (label, {server: (rps ratio, cpu ratio)})
    for scenario in SCENARIOS:
        if scenario.name not in results:
            continue
        summary = {n: summarize(r["rounds"]) for n, r in results[scenario.name].items()}
        base = summary.get("bjoern")
        if not base:
            continue
        for multi in (False, True):
            vals = {
                n: (s["rps"] / base["rps"], s["cpu_us"] / base["cpu_us"])
                for n, s in summary.items()
                if s and results[scenario.name][n]["multi"] == multi
            }
            if multi and vals:
                vals = {"bjoern": (1.0, 1.0), **vals}
            if vals:
                groups.append((scenario.name + (", 2 processes\n(vs 1 bjoern)" if multi else ""), vals))
    if not groups:
        return False
    names = []
    for _, vals in groups:
        names += [n for n in vals if n not in names]
    fig, axes = plt.subplots(2, 1, figsize=(13, 9))
    cmap = plt.get_cmap("tab20")
    colors = {name: cmap(i % 20) for i, name in enumerate(names)}
    for ax, idx, title, cap in (
        (axes[0], 0, "requests/s relative to bjoern (higher is better)", 2.5),
        (axes[1], 1, "server CPU time per request relative to bjoern (lower is better)", 3.0),
    ):
        labelled = set()
        for g, (_, vals) in enumerate(groups):
            width = 0.84 / len(vals)
            for j, (name, pair) in enumerate(vals.items()):
                x, y = g - 0.42 + width * (j + 0.5), pair[idx]
                ax.bar(
                    x,
                    min(y, cap),
                    width,
                    label=None if name in labelled else name,
                    color=colors[name],
                    edgecolor="black" if name.startswith("evserve") else "none",
                    linewidth=1.5,
                )
                labelled.add(name)
                if y > cap:  # clipped: say how far it goes
                    ax.text(x, cap, "%.0f" % y, ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([g for g, _ in groups])
        ax.set_ylim(0, cap * 1.08)
        ax.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=5, fontsize=9, loc="lower center")
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.savefig(path, dpi=110)
    return True


def versions():
    out = {}
    probe = subprocess.run(
        [VENV_PY, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )
    try:
        for pkg in json.loads(probe.stdout):
            if pkg["name"].lower() in ("bjoern", "granian", "gunicorn", "waitress", "pyruvate", "meinheld", "flask"):
                out[pkg["name"].lower()] = pkg["version"]
    except ValueError:
        pass
    out["python"] = platform.python_version()
    for name, argv in (("wrk", ["wrk", "-v"]), ("nginx", ["nginx", "-v"])):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            text = (p.stdout + p.stderr).split()
            out[name] = next((w.split("/")[-1] for w in text if w[:1].isdigit() or "/" in w), "?")
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        p = subprocess.run([evserve_bin(), "--version"], capture_output=True, text=True, timeout=10)
        if p.returncode == 0:
            out["evserve"] = p.stdout.split()[-1]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


def load_peer_status():
    path = os.path.join(VENV, "peer-status.tsv")
    status = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 3:
                    status[parts[0]] = {"ok": parts[1] == "ok", "note": parts[2]}
    except OSError:
        pass
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--warmup", type=float, default=1, help="warm-up seconds per server (default 1)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--only", default="", help="scenarios, comma-separated: " + ",".join(s.name for s in SCENARIOS))
    parser.add_argument("--servers", default="", help="servers whose names start with any of these, comma-separated (e.g. evserve,bjoern)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 round of 1 s, no warm-up")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="results directory")
    parser.add_argument("--report", metavar="RESULTS_JSON", help="only rewrite the table and chart of a past run")
    args = parser.parse_args()
    if args.report:
        with open(args.report) as f:
            past = json.load(f)
        write_outputs(args.out, past["meta"], past["results"], past["notes"])
        return
    if args.quick:
        args.duration, args.rounds, args.warmup = 1, 1, 0
    if args.duration <= 0 or args.duration > 600 or args.rounds < 1 or args.rounds > 20:
        parser.error("--duration must be in (0, 600] and --rounds in [1, 20]")
    args.servers = set(filter(None, args.servers.split(",")))
    only = set(filter(None, args.only.split(",")))
    unknown = only - {s.name for s in SCENARIOS}
    if unknown:
        parser.error("unknown scenario(s): " + ", ".join(sorted(unknown)))
    if _which("wrk") is None:
        sys.exit("bench: wrk is not installed (bench/run.sh installs it)")
    if os.cpu_count() and os.cpu_count() < 2:
        sys.exit("bench: needs 2 cores (server on core 1, wrk on core 0)")

    os.makedirs(args.out, exist_ok=True)
    raw = os.path.join(args.out, "raw")
    os.makedirs(raw, exist_ok=True)
    logdir = tempfile.mkdtemp(prefix="run-", dir=raw)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = {
        "date": stamp,
        "machine": "%s, %d cores, Linux %s" % (platform.machine(), os.cpu_count(), platform.release()),
        "connections": args.connections,
        "duration": args.duration,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "command": ("EVSERVE_BIN_B=%s " % evserve_b_bin() if evserve_b_bin() else "")
        + "bench/run.sh " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "load": " ".join("%.2f" % x for x in os.getloadavg()),
    }
    noise_seconds = min(args.duration, 5)
    print("metering the machine's noise for %g s" % noise_seconds, flush=True)
    meta["noise_before"] = noise.measure(noise_seconds)
    peer_status = load_peer_status()
    notes = {}  # server -> why it did not run (or how it was installed)
    ports = Ports(18100)
    results = {}
    for scenario in SCENARIOS:
        if only and scenario.name not in only:
            continue
        why = scenario.needs and module_missing(scenario.needs, peer_status)
        if why:
            notes["scenario " + scenario.name] = why
            print("\n== %s: not run, %s" % (scenario.name, why), flush=True)
            continue
        results[scenario.name] = run_scenario(scenario, args, ports, logdir, peer_status, notes)
        if scenario.floor:
            meta.setdefault("floors", {})[scenario.name] = measure_floor(scenario, args.rounds, notes)
    meta["noise_after"] = noise.measure(noise_seconds)
    for name, s in peer_status.items():
        if s["ok"] and s["note"]:
            notes.setdefault(name + " (install)", s["note"])
    with open(os.path.join(logdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results, "notes": notes}, f, indent=1)
    print("\nraw data and server logs in %s" % logdir)
    write_outputs(args.out, meta, results, notes)


def write_outputs(out, meta, results, notes):
    os.makedirs(out, exist_ok=True)
    md = os.path.join(out, "latest.md")
    write_markdown(md, meta, results, notes)
    print("wrote %s" % md)
    try:
        if write_chart(os.path.join(out, "latest.png"), results):
            print("wrote %s" % os.path.join(out, "latest.png"))
    except ImportError as exc:
        print("no chart: %s" % exc)


if __name__ == "__main__":
    main()
