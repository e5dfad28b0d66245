"""End-to-end tests of the evserve launcher: the real binary, real instances, real nginx.

Every wait is on a condition with a deadline; every loop is bounded; all traffic goes to
127.0.0.1. nginx tests are skipped (with the reason) only when nginx is not installed.
Set EVSERVE_BIN to test another evserve command than .venv-test/bin/evserve.
"""

import http.client
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import evserve_bin

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "tests" / "apps"
EVSERVE = Path(evserve_bin())


def launcher_find_nginx():
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


NGINX = launcher_find_nginx()
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (CI installs it with apt-get install nginx)"
)


def launcher_free_ports(count):
    """`count` consecutive free ports on 127.0.0.1 (bounded search)."""
    for attempt in range(200):
        base = 20000 + (os.getpid() * 37 + attempt * 101) % 30000
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return list(range(base, base + count))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports found")


def launcher_wait(condition, timeout, what):
    """Polls `condition` until it returns a true value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def launcher_get(port, path="/", timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class LauncherProcess:
    """A running `evserve` launcher with its stderr collected line by line."""

    def __init__(self, args, cwd, env=None):
        self.cwd = Path(cwd)
        self.lines = []
        self.lock = threading.Lock()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [str(EVSERVE), *args],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def output(self):
        with self.lock:
            return "\n".join(line for _, line in self.lines)

    def find(self, pattern, after=0.0):
        """The first line matching `pattern` logged after monotonic time `after`."""
        regex = re.compile(pattern)
        with self.lock:
            for when, line in self.lines:
                if when >= after and regex.search(line):
                    return when, line
        return None

    def wait_for(self, pattern, timeout, after=0.0):
        def seen():
            if self.proc.poll() is not None and not self.find(pattern, after):
                self.reader.join(2)
                if not self.find(pattern, after):
                    raise AssertionError(
                        f"launcher exited ({self.proc.returncode}) before /{pattern}/:\n{self.output()}"
                    )
            return self.find(pattern, after)

        try:
            return launcher_wait(seen, timeout, f"/{pattern}/ in the launcher's log")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- launcher log ---\n{self.output()}") from None

    def wait_ready(self, timeout=30):
        return self.wait_for(r"\] ready: ", timeout)

    def status(self):
        out = subprocess.run(
            [str(EVSERVE), "status"], cwd=self.cwd, capture_output=True, text=True, timeout=10
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def instance_pids(self):
        """{instance number: pid} of the ready instances, from `evserve status`."""
        pids = {}
        for line in self.status().splitlines()[2:]:
            cols = line.split()
            if len(cols) >= 4 and cols[3] == "ready":
                pids[int(cols[0])] = int(cols[1])
        return pids

    def wait_exit(self, timeout, why):
        """The exit code and the whole log of a launcher expected to exit by itself."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"launcher kept running {why}:\n{self.output()}")
        self.reader.join(2)
        return code, self.output()

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(2)
        return self.proc.returncode


@pytest.fixture
def launcher_start(tmp_path):
    started = []

    def start(*args, cwd=None, env=None):
        p = LauncherProcess([str(a) for a in args], cwd or tmp_path, env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


class LauncherLoad:
    """Threads sending GETs to 127.0.0.1:port over keep-alive connections until stopped
    (bounded by `max_seconds`), counting failures."""

    def __init__(self, port, threads=8, max_seconds=60):
        self.port = port
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.bodies = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        conn = None
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read().decode()
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                        self.bodies.append((time.monotonic(), body))
                    else:
                        self.failures.append(f"HTTP {resp.status}: {body[:200]}")
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def wait_for_requests(self, count, timeout=10):
        launcher_wait(lambda: self.ok >= count, timeout, f"{count} successful requests")

    def finish(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(15)
        return self.ok, self.failures


def bodies_after_reload(load, done_at, count=200, timeout=15):
    """Stops `load` once `count` requests were answered a second after `done_at` (when the
    reload was done); checks that none failed and returns those answers. Old instances may
    finish requests they had already accepted; after that short bounded while every answer
    comes from the new code."""
    launcher_wait(
        lambda: sum(1 for when, _ in list(load.bodies) if when > done_at + 1.0) >= count,
        timeout,
        f"{count} requests answered a second after the reload",
    )
    ok, failures = load.finish()
    print(f"under load: {ok} requests, {len(failures)} failed")
    assert failures == [], failures[:5]
    return [body for when, body in load.bodies if when > done_at + 1.0]


def launcher_nginx_args(tmp_path, ports, listen_port):
    return [
        "--port-range",
        f"{ports[0]}-{ports[-1]}",
        "--nginx-conf",
        tmp_path / "nginx" / "nginx.conf",
        "--listen",
        f"127.0.0.1:{listen_port}",
        "--nginx",
    ]


def start_behind_nginx(launcher_start, tmp_path, instances):
    """A ready launcher running `instances` instances of launcher_app and its nginx; returns it
    and the port nginx listens on."""
    ports = launcher_free_ports(instances + 1)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(*launcher_nginx_args(tmp_path, backends, listen), APPS / "launcher_app.py:app")
    p.wait_ready()
    return p, listen


def launcher_descendants(root_pid):
    """Pids of every process below `root_pid`, from /proc (children of children too)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {root_pid}
    for _ in range(10):
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        if not frontier:
            break
        found |= frontier
    return found


def launcher_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_binary_exists():
    assert EVSERVE.exists(), f"{EVSERVE} is missing: scripts/test.sh installs it, or set EVSERVE_BIN"


def test_start_prints_instances_and_ready_and_status(launcher_start, tmp_path):
    ports = launcher_free_ports(3)
    p = launcher_start("--port-range", f"{ports[0]}-{ports[-1]}", APPS / "launcher_app.py:app")
    p.wait_ready()
    for i, port in enumerate(ports):
        assert p.find(rf"instance {i}: port {port}, pid \d+"), p.output()
        status, body = launcher_get(port)
        assert status == 200 and body.startswith("pid="), body
    status_text = p.status()
    rows = status_text.splitlines()[2:]
    assert len(rows) == 3, status_text
    for row in rows:
        cols = row.split()
        assert cols[3] == "ready" and cols[1].isdigit() and "MiB" in row, status_text
    sock = p.find(r"control socket (\S+)")[1].rsplit(" ", 1)[1]
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert p.stop() == 0
    assert not os.path.exists(sock), "control socket left behind"


def test_import_error_under_the_launcher_prints_one_traceback_and_exits_2(launcher_start):
    ports = launcher_free_ports(4)
    p = launcher_start(
        "--port-range", f"{ports[0]}-{ports[-1]}", APPS / "launcher_import_error.py:app"
    )
    code, out = p.wait_exit(30, "on an import error")
    assert code == 2, out
    assert "Traceback" in out and "launcher_module_that_does_not_exist" in out, out
    assert "failed to import" in out, out
    assert len(re.findall(r"instance \d+ starting", out)) == 1, f"more than one import:\n{out}"
    assert out.count("Traceback (most recent call last)") == 1, out


def test_crash_loop_is_given_up_after_the_limit(launcher_start):
    ports = launcher_free_ports(2)
    p = launcher_start(
        "--port-range",
        f"{ports[0]}-{ports[-1]}",
        "--max-restarts",
        "2",
        "--restart-window",
        "60",
        APPS / "launcher_app.py:app",
    )
    p.wait_ready()
    # Crash instance 0 until the launcher gives up on it (3 crashes: 2 restarts allowed).
    # Its port stays open across restarts, so each GET / waits for the restarted instance.
    for _ in range(3):
        assert launcher_get(ports[0], timeout=10)[0] == 200
        _ignore_errors(lambda: launcher_get(ports[0], "/crash", timeout=10))
    line = p.wait_for(r"instance 0 .*not restarting it", 10)[1]
    assert "--max-restarts 2" in line, line
    assert "given-up" in p.status()
    # The port is closed: refused at once rather than left hanging.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ports[0]), timeout=2).close()
    # The other instance still serves.
    assert launcher_get(ports[1])[0] == 200


def test_stuck_request_gets_its_instance_replaced(launcher_start):
    ports = launcher_free_ports(1)
    p = launcher_start(
        "--port-range", f"{ports[0]}-{ports[0]}", "--timeout", "2", APPS / "launcher_app.py:app"
    )
    p.wait_ready()
    old_pid = p.instance_pids()[0]
    stuck = threading.Thread(
        target=lambda: _ignore_errors(lambda: launcher_get(ports[0], "/sleep?s=60", timeout=30)),
        daemon=True,
    )
    started = time.monotonic()
    stuck.start()
    p.wait_for(r"instance 0 .*has been stuck for 2s.*killing it", 10)
    p.wait_for(r"instance 0 ready", 5, after=started)
    elapsed = time.monotonic() - started
    assert elapsed < 6, f"replaced after {elapsed:.1f}s"
    assert not launcher_alive(old_pid)
    assert launcher_get(ports[0])[0] == 200


def _ignore_errors(fn):
    try:
        fn()
    except (OSError, http.client.HTTPException):
        pass


@needs_nginx
def test_kill_9_under_load_behind_nginx_fails_no_request(launcher_start, tmp_path):
    p, listen = start_behind_nginx(launcher_start, tmp_path, 4)
    load = LauncherLoad(listen, threads=8, max_seconds=60)
    load.wait_for_requests(200)
    victim = p.instance_pids()[1]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    when, _ = p.wait_for(r"instance 1 ready", 5, after=killed_at)
    back_in = when - killed_at
    before = load.ok
    load.wait_for_requests(before + 200)
    ok, failures = load.finish()
    print(f"kill -9 under load: {ok} requests, {len(failures)} failed, instance back in {back_in:.3f}s")
    assert failures == [], failures[:5]
    assert back_in < 1.0, f"instance back after {back_in:.3f}s"
    assert victim not in p.instance_pids().values()


@needs_nginx
def test_sighup_under_load_fails_no_request_and_serves_new_code(launcher_start, tmp_path):
    app_file = tmp_path / "launcher_reload_app.py"
    shutil.copy(APPS / "launcher_app.py", app_file)
    ports = launcher_free_ports(4)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(*launcher_nginx_args(tmp_path, backends, listen), f"{app_file}:app")
    p.wait_ready()
    load = LauncherLoad(listen, threads=8, max_seconds=60)
    load.wait_for_requests(200)
    app_file.write_text(app_file.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    hup_at = time.monotonic()
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(r"reload: done", 30, after=hup_at)
    done_at = time.monotonic()
    print(f"SIGHUP under load: reload took {done_at - hup_at:.2f}s")
    late = bodies_after_reload(load, done_at)
    assert late and all("version=v2" in b for b in late), late[:5]
    for port in backends:
        assert "version=v2" in launcher_get(port)[1]


def test_sighup_with_broken_code_keeps_the_old_instances(launcher_start, tmp_path):
    app_file = tmp_path / "launcher_reload_broken.py"
    shutil.copy(APPS / "launcher_app.py", app_file)
    ports = launcher_free_ports(2)
    p = launcher_start("--port-range", f"{ports[0]}-{ports[-1]}", f"{app_file}:app")
    p.wait_ready()
    before = p.instance_pids()
    app_file.write_text("raise RuntimeError('launcher test: broken on purpose')\n")
    hup_at = time.monotonic()
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(r"reload stopped at instance 0: the reloaded app fails to import", 30, after=hup_at)
    assert "broken on purpose" in p.output()
    assert p.instance_pids() == before
    for port in ports:
        assert launcher_get(port)[0] == 200


@needs_nginx
def test_a_killed_launcher_leaves_no_nginx_behind(launcher_start, tmp_path):
    # Bug: a launcher killed with SIGKILL left the nginx it started running (its instances
    # already went down with it).
    p, listen = start_behind_nginx(launcher_start, tmp_path, 2)
    assert launcher_get(listen)[0] == 200
    family = launcher_descendants(p.proc.pid)
    assert len(family) >= 2 + 2, f"expected instances and nginx: {family}"
    p.proc.kill()
    p.proc.wait(10)
    launcher_wait(lambda: not any(launcher_alive(pid) for pid in family), 10,
                  "every instance and nginx process to exit")


@needs_nginx
def test_sigterm_drains_and_leaves_no_process_behind(launcher_start, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    ports = launcher_free_ports(3)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(
        *launcher_nginx_args(tmp_path, backends, listen),
        "--graceful-timeout",
        "5",
        APPS / "launcher_app.py:app",
        env={"LAUNCHER_TEST_MARKS": str(marks)},
    )
    p.wait_ready()
    assert launcher_get(listen)[0] == 200
    family = launcher_descendants(p.proc.pid)
    assert len(family) >= 2 + 2, f"expected instances and nginx: {family}"
    # A request in flight when the stop signal comes is finished, not cut.
    slow = {}
    t = threading.Thread(target=lambda: slow.update(r=launcher_get(listen, "/sleep?s=1&mark=1", timeout=10)))
    t.start()
    launcher_wait(lambda: list(marks.iterdir()), 5, "the slow request to be in flight")
    started = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    code = p.proc.wait(10)
    elapsed = time.monotonic() - started
    t.join(10)
    assert code == 0, p.output()
    assert slow.get("r", (None,))[0] == 200, f"in-flight request cut: {slow}"
    assert elapsed < 5 + 1, f"took {elapsed:.1f}s"
    left = [pid for pid in family if launcher_alive(pid)]
    assert left == [], f"left behind: {left}"


@needs_nginx
def test_generated_configs_pass_nginx_t(launcher_start, tmp_path):
    # Single host, as the launcher writes it.
    ports = launcher_free_ports(3)
    conf = tmp_path / "single" / "nginx.conf"
    p = launcher_start(
        "--port-range",
        f"{ports[1]}-{ports[2]}",
        "--nginx-conf",
        conf,
        "--listen",
        f"127.0.0.1:{ports[0]}",
        APPS / "launcher_app.py:app",
    )
    p.wait_ready()
    run_dir = Path(str(conf) + ".run")
    out = subprocess.run(
        [NGINX, "-t", "-e", run_dir / "error.log", "-c", conf], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    text = conf.read_text()
    for needle in ("least_conn;", "keepalive 1024;", f"server 127.0.0.1:{ports[2]} ", "client_max_body_size 1g;"):
        assert needle in text, needle
    assert "daemon off;" not in text, "daemon off; only when the launcher runs nginx itself"
    # Several hosts, from `evserve nginx-config`.
    several = subprocess.run(
        [
            str(EVSERVE),
            "nginx-config",
            "--listen",
            "127.0.0.1:8080",
            "--backend",
            "10.1.0.1:8001-8004",
            "--backend",
            "10.1.0.2:8001-8004",
            "--backend",
            "unix:/run/evserve.sock",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert several.returncode == 0, several.stderr
    prefix = tmp_path / "several"
    (prefix / "run").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(several.stdout)
    assert several.stdout.count("server 10.1.0.") == 8
    out = subprocess.run(
        [NGINX, "-t", "-p", prefix, "-e", "run/error.log", "-c", prefix / "nginx.conf"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    bad = subprocess.run(
        [str(EVSERVE), "nginx-config", "--backend", "10.1.0.1:9-1"], capture_output=True, text=True, timeout=10
    )
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1, bad.stderr


def launcher_spread(port, clients, total):
    """{pid: connections served} for `total` requests, each on a new connection, from
    `clients` threads."""
    counts = {}
    lock = threading.Lock()
    per_client = total // clients

    def client():
        for _ in range(per_client):
            status, body = launcher_get(port)
            assert status == 200, body
            with lock:
                counts[body.split()[0]] = counts.get(body.split()[0], 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return counts


def test_workers_share_one_socket_spread_and_resize(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "4", "--port", port, APPS / "launcher_app.py:app")
    p.wait_ready()
    assert len(p.instance_pids()) == 4
    # New connection per request: how evenly the kernel hands accepted connections out,
    # one client at a time and then eight at once.
    for clients, total in ((1, 2000), (8, 4000)):
        counts = launcher_spread(port, clients, total)
        shares = sorted((100.0 * n / total for n in counts.values()), reverse=True)
        print(f"--workers 4, {clients} clients, {total} connections: shares % = {[round(x, 1) for x in shares]}")
        assert sum(counts.values()) == total
        assert len(counts) >= 2, f"one instance took every connection: {counts}"
    sent_at = time.monotonic()
    p.proc.send_signal(signal.SIGTTIN)
    p.wait_for(r"instance 4 ready", 10, after=sent_at)
    assert len(p.instance_pids()) == 5
    p.proc.send_signal(signal.SIGTTOU)
    p.wait_for(r"instance 4 \(pid \d+\) stopped", 10)
    launcher_wait(lambda: len(p.instance_pids()) == 4, 5, "4 instances after SIGTTOU")
    assert p.stop() == 0


def test_a_burst_of_new_connections_is_shared_by_the_instances(launcher_start, tmp_path):
    # Bug: with --workers, an instance that was free accepted every connection of a burst
    # before any request arrived on them (an accept cost nothing until then) while the
    # other instances were busy or still waking; keep-alive then pinned all the load to
    # it, and two instances served on one core. Now an instance takes no new connection
    # while the one it accepted last has not sent its request.
    marks = tmp_path / "marks"
    marks.mkdir()
    port = launcher_free_ports(1)[0]
    p = launcher_start(
        "--workers", "2", "--port", port, APPS / "launcher_app.py:app", env={"LAUNCHER_TEST_MARKS": str(marks)}
    )
    p.wait_ready()
    assert len(p.instance_pids()) == 2
    busy = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    busy.request("GET", "/sleep?s=0.06&mark=1")
    busy_pid = int(launcher_wait(lambda: list(marks.iterdir()), 5, "an instance inside /sleep")[0].name)
    # Like a load generator: open every connection, then send a request on each.
    burst = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(16)]
    for c in burst:
        c.connect()
    for c in burst:
        c.request("GET", "/sleep?s=0.02")
    served_by = []
    for c in burst:
        resp = c.getresponse()
        assert resp.status == 200
        served_by.append(int(resp.read().decode().split()[0].removeprefix("pid=")))
        c.close()
    assert busy.getresponse().status == 200
    busy.close()
    by_busy = served_by.count(busy_pid)
    print(f"--workers 2, 16 new connections while one instance was busy: {by_busy} / {16 - by_busy}")
    assert len(set(served_by)) == 2 and 4 <= by_busy <= 12, served_by
    assert p.stop() == 0


def test_a_flood_of_silent_connections_does_not_slow_accepting(launcher_start):
    # Waiting up to 1 ms for each new connection's request (so a burst is shared out) must
    # not turn into one accept per millisecond when the connections stay silent: clients
    # queued behind 600 of them would wait 0.3 s.
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "2", "--port", port, APPS / "launcher_app.py:app")
    p.wait_ready()
    silent = []
    try:
        for _ in range(600):
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        start = time.monotonic()
        status, body = launcher_get(port)
        took = time.monotonic() - start
    finally:
        for s in silent:
            s.close()
    assert status == 200, body
    print(f"--workers 2, behind 600 silent connections: answered in {took * 1000:.1f} ms")
    assert took < 0.15, f"a request queued behind silent connections took {took:.3f}s"
    assert p.stop() == 0


def test_nginx_flag_errors_are_one_line(tmp_path):
    out = subprocess.run(
        [str(EVSERVE), "--workers", "2", "--nginx-conf", tmp_path / "n.conf", str(APPS / "launcher_app.py:app")],
        capture_output=True,
        text=True,
        timeout=10,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--listen" in out.stderr, out.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))


@needs_nginx
def test_launch_script_serves_behind_nginx_and_stops_cleanly(tmp_path):
    # The smoke test of scripts/launch.sh: build, launcher, nginx in front, an answer.
    ports = launcher_free_ports(3)
    listen, first, last = ports[0], ports[1], ports[2]
    env = dict(
        os.environ,
        EVSERVE_LISTEN=f"127.0.0.1:{listen}",
        EVSERVE_PORTS=f"{first}-{last}",
        EVSERVE_CONF=str(tmp_path / "nginx" / "nginx.conf"),
        EVSERVE_WAIT="60",
        PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin",
    )
    env.pop("VIRTUAL_ENV", None)
    out = open(tmp_path / "launch.out", "w+")
    proc = subprocess.Popen(
        [str(REPO / "scripts" / "launch.sh"), "launcher_app:app", "--chdir", str(APPS)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        launcher_wait(
            lambda: "serving" in (tmp_path / "launch.out").read_text() or proc.poll() is not None,
            240,
            "launch.sh to report it is serving",
        )
        assert proc.poll() is None, (tmp_path / "launch.out").read_text()
        status, _ = launcher_get(listen)
        assert status == 200
        below = launcher_descendants(proc.pid)
        assert below, "launch.sh started no launcher"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "launch.out").read_text()
        launcher_wait(
            lambda: not any(launcher_alive(p) for p in below), 10, "no process left behind"
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        out.close()


def launcher_wait_dead(pid, timeout):
    """time.time() at which process `pid` (not our child) is seen gone: waits on a pidfd,
    so the moment is exact to the scheduler, not to a polling interval."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return time.time()
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(timeout * 1000), f"pid {pid} still alive after {timeout}s"
        return time.time()
    finally:
        os.close(fd)


def test_timeout_never_kills_before_the_request_ran_timeout_seconds(launcher_start, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    port = launcher_free_ports(1)[0]
    p = launcher_start(
        "--port-range", f"{port}-{port}", "--timeout", "2", "--max-restarts", "20",
        APPS / "timeout_app.py:app",
        env={"TIMEOUT_TEST_MARKS": str(marks)},
    )
    p.wait_ready()
    ages = []
    for attempt in range(4):
        sent_at = time.monotonic()
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            conn.sendall(b"GET /sleep?s=inf HTTP/1.1\r\nHost: t\r\n\r\n")
            mark = launcher_wait(
                lambda: next((m for m in marks.iterdir() if m.name.isdigit()), None),
                10,
                "the request start",
            )
            pid = int(mark.name)
            started = float(launcher_wait(lambda: mark.read_text(), 5, "the start time"))
            killed = launcher_wait_dead(pid, 10)
        finally:
            conn.close()
        mark.unlink()
        ages.append(round(killed - started, 3))
        p.wait_for(r"instance 0 ready", 10, after=sent_at)
    print(f"--timeout 2: killed at request ages {ages}")
    assert all(2.0 <= age <= 3.2 for age in ages), f"killed at request ages {ages} with --timeout 2"
    assert len(p.find(r"has been stuck for 2s")[1]) > 0


def test_a_request_shorter_than_timeout_is_never_killed(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start(
        "--port-range", f"{port}-{port}", "--timeout", "2", APPS / "timeout_app.py:app"
    )
    p.wait_ready()
    pid = p.instance_pids()[0]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(5):
            conn.request("GET", "/sleep?s=1.5")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"slept"), p.output()
    finally:
        conn.close()
    assert p.instance_pids() == {0: pid}
    assert "killing it" not in p.output(), p.output()


LOG_LINE = re.compile(
    r"^\[\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\] \[\d+\] \[(INFO|WARNING|ERROR)\] \S"
)


def test_log_lines_of_concurrent_instances_never_splice(launcher_start):
    ports = launcher_free_ports(8)
    for _ in range(2):
        p = launcher_start("--port-range", f"{ports[0]}-{ports[-1]}", APPS / "launcher_app.py:app")
        p.wait_ready()
        for port in ports:
            assert launcher_get(port)[0] == 200
        assert p.stop() == 0
        bad = [line for line in p.output().splitlines() if not LOG_LINE.match(line)]
        assert bad == [], "\n".join(bad)
        assert len(re.findall(r"Listening at: http://127\.0\.0\.1:\d+ \(\d+\)$", p.output(), re.M)) == 8


def test_log_messages_count_one_instance_in_the_singular(launcher_start, tmp_path):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--port-range", f"{port}-{port}", APPS / "launcher_app.py:app")
    p.wait_ready()
    assert p.stop() == 0
    out = p.output()
    assert re.search(r"starting 1 instance of ", out), out
    assert re.search(r"ready: 1 instance of ", out), out
    assert re.search(r"stopping 1 instance \(", out), out
    assert "0 in-flight requests" in out, out
    assert not re.search(r"\b1 instances\b|request\(s\)", out), out


def test_two_stop_signals_at_once_drain_the_launcher_gracefully(launcher_start, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    port = launcher_free_ports(1)[0]
    p = launcher_start(
        "--port-range", f"{port}-{port}", APPS / "launcher_app.py:app",
        env={"LAUNCHER_TEST_MARKS": str(marks)},
    )
    p.wait_ready()
    result = {}

    def slow():
        result["answer"] = launcher_get(port, "/sleep?s=1.5&mark=1", timeout=15)

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    launcher_wait(lambda: any(marks.iterdir()), 10, "the slow request to reach the app")
    os.kill(p.proc.pid, signal.SIGTERM)
    os.kill(p.proc.pid, signal.SIGINT)
    t.join(15)
    assert result.get("answer", (None,))[0] == 200, p.output()
    assert p.proc.wait(15) == 0, p.output()
    assert "without draining" not in p.output()


def launcher_cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def launcher_comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def test_ps_tells_the_launcher_from_its_instances(launcher_start):
    ports = launcher_free_ports(2)
    p = launcher_start("--port-range", f"{ports[0]}-{ports[-1]}", "launcher_app:app", cwd=APPS)
    p.wait_ready()
    assert launcher_cmdline(p.proc.pid) == (
        f"evserve: launcher launcher_app:app 127.0.0.1:{ports[0]}-{ports[1]}"
    )
    assert launcher_comm(p.proc.pid) == "evserve-launch"
    for slot, pid in p.instance_pids().items():
        assert launcher_cmdline(pid) == f"evserve: instance {slot} launcher_app:app :{ports[slot]}"
        assert launcher_comm(pid) == f"evserve-inst-{slot}"
    ps = subprocess.run(
        ["ps", "-o", "args=", "-p", str(p.proc.pid)], capture_output=True, text=True, timeout=10
    )
    if ps.returncode == 0:
        assert ps.stdout.strip().startswith("evserve: launcher launcher_app:app"), ps.stdout


@needs_nginx
def test_nginx_that_cannot_bind_its_port_stops_the_launcher_with_exit_1(launcher_start, tmp_path):
    ports = launcher_free_ports(3)
    listen, backends = ports[0], ports[1:]
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", listen))
        taken.listen(16)
        p = launcher_start(*launcher_nginx_args(tmp_path, backends, listen), APPS / "launcher_app.py:app")
        code, out = p.wait_exit(30, "without nginx")
    assert code == 1, out
    assert "] ready: " not in out, out
    fatal = [line for line in out.splitlines() if line.startswith("evserve: error:")]
    assert len(fatal) == 1 and "Address already in use" in fatal[0], out
    assert "restarting it" not in out, out
    assert not any(launcher_alive(pid) for pid in launcher_descendants(p.proc.pid))
    for port in backends:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


@needs_nginx
def test_ready_is_printed_only_once_nginx_answers(launcher_start, tmp_path):
    ports = launcher_free_ports(3)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(*launcher_nginx_args(tmp_path, backends, listen), APPS / "launcher_app.py:app")
    ready_at, _ = p.wait_ready()
    answered = launcher_get(listen, timeout=2)
    nginx_at, _ = p.find(r"nginx starting \(pid \d+")
    assert nginx_at <= ready_at
    assert answered[0] == 200 and answered[1].startswith("pid="), answered


@needs_nginx
def test_nginx_killed_later_is_restarted_and_serves_again(launcher_start, tmp_path):
    p, listen = start_behind_nginx(launcher_start, tmp_path, 2)
    old = int(p.find(r"nginx starting \(pid (\d+)")[1].split("pid ")[1].split(",")[0])
    old_workers = launcher_descendants(old)
    killed_at = time.monotonic()
    os.kill(old, signal.SIGKILL)
    p.wait_for(r"nginx was killed by signal 9 .*restarting it", 10, after=killed_at)
    p.wait_for(r"nginx starting \(pid \d+", 10, after=killed_at)

    def serves():
        try:
            return launcher_get(listen, timeout=2)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    launcher_wait(serves, 15, "the restarted nginx to answer")
    new = int(p.find(r"nginx starting \(pid (\d+)", after=killed_at)[1].split("pid ")[1].split(",")[0])
    assert new != old and launcher_alive(new)
    launcher_wait(lambda: not any(launcher_alive(w) for w in old_workers), 10, "the old workers to go")
    assert "not restarting it" not in p.output(), p.output()


def test_timeout_counts_from_the_stuck_request_not_from_the_work_before_it(launcher_start, tmp_path):
    # A 1.5 s request, then (pipelined, so in the same turn of the event loop) one that never
    # ends: with --timeout 2 the second must run 2 s, not 0.5 s, before its instance dies.
    marks = tmp_path / "marks"
    marks.mkdir()
    port = launcher_free_ports(1)[0]
    p = launcher_start(
        "--port-range", f"{port}-{port}", "--timeout", "2", APPS / "timeout_app.py:app",
        env={"TIMEOUT_TEST_MARKS": str(marks)},
    )
    p.wait_ready()
    pid = p.instance_pids()[0]
    mark = marks / str(pid)
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        conn.sendall(
            b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: t\r\n\r\nGET /sleep?s=inf HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        first = float(launcher_wait(lambda: mark.exists() and mark.read_text(), 10, "the first start"))
        second = float(
            launcher_wait(
                lambda: mark.read_text() != repr(first) and mark.read_text(), 10, "the second start"
            )
        )
        killed = launcher_wait_dead(pid, 10)
    finally:
        conn.close()
    age = killed - second
    print(f"--timeout 2: the stuck request ran {age:.3f}s, {second - first:.3f}s after the first")
    assert 2.0 <= age <= 3.2, f"killed {age:.3f}s into the stuck request"


def test_an_absurd_workers_count_is_refused_with_one_line_and_exit_2(launcher_start):
    # Bug: --workers had no upper limit: --workers 100000 forked until the OOM killer came.
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "100000", "--port", port, APPS / "launcher_app.py:app")
    code, out = p.wait_exit(10, "with --workers 100000")
    assert code == 2, out
    assert out.count("\n") == 0 and "--workers 100000 is too many: at most 256" in out, out
    p = launcher_start("--workers", "257", "--port", port, APPS / "launcher_app.py:app")
    assert p.wait_exit(10, "with --workers 257")[0] == 2


def test_a_stop_signal_while_many_workers_start_is_acted_on_at_once(launcher_start):
    # Bug: once instance 0 was ready, the launcher forked every other instance in one loop
    # turn and read a SIGTERM only after the last one (3.8 s for --workers 150).
    workers = 150
    port = launcher_free_ports(1)[0]
    p = launcher_start(
        "--workers", workers, "--port", port, "--graceful-timeout", "5", APPS / "launcher_app.py:app"
    )
    p.wait_for(r"instance 1 starting", 30)
    sent_at = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    code, out = p.wait_exit(20, "after SIGTERM during start-up")
    elapsed = time.monotonic() - sent_at
    pids = [int(m) for m in re.findall(r"instance \d+ starting \(pid (\d+)", out)]
    print(f"--workers {workers}: SIGTERM during start-up; {len(pids)} started, stopped in {elapsed:.1f}s")
    assert code == 0, out
    assert len(pids) < workers / 2, f"{len(pids)} instances started after the stop signal:\n{out}"
    assert elapsed < 5 + 2, f"took {elapsed:.1f}s"
    launcher_wait(lambda: not any(launcher_alive(pid) for pid in pids), 5, "no instance left behind")


def test_timeout_kills_and_clean_exits_never_use_up_max_restarts(launcher_start):
    # Bug: instances killed by --timeout (and instances that exited 0 after an operator's
    # SIGTERM) counted toward --max-restarts: two stuck requests with --max-restarts 1 gave
    # the only instance up, closed its socket and stopped the launcher.
    port = launcher_free_ports(1)[0]
    p = launcher_start(
        "--workers", "1", "--port", port, "--timeout", "2", "--max-restarts", "0",
        APPS / "launcher_app.py:app",
    )
    p.wait_ready()
    for attempt in range(2):
        sent_at = time.monotonic()
        stuck = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            stuck.sendall(b"GET /sleep?s=60 HTTP/1.1\r\nHost: t\r\n\r\n")
            line = p.wait_for(r"instance 0 .*killed \(--timeout\)", 10, after=sent_at)[1]
            assert "never counts toward --max-restarts" in line, line
            p.wait_for(r"instance 0 ready", 10, after=sent_at)
        finally:
            stuck.close()
    sent_at = time.monotonic()
    os.kill(p.instance_pids()[0], signal.SIGTERM)
    line = p.wait_for(r"instance 0 .*exited with code 0", 10, after=sent_at)[1]
    assert "a clean exit never counts toward --max-restarts" in line, line
    p.wait_for(r"instance 0 ready", 10, after=sent_at)
    assert launcher_get(port)[0] == 200
    assert "not restarting it" not in p.output(), p.output()
    assert p.proc.poll() is None, p.output()


def launcher_status_here(cwd):
    return subprocess.run(
        [str(EVSERVE), "status"], cwd=cwd, capture_output=True, text=True, timeout=10
    )


def test_two_launchers_in_one_directory_run_side_by_side_and_status_finds_each(
    launcher_start, tmp_path
):
    # Bug: the default control socket depended on the working directory only, so a second
    # launcher started there on other ports was refused ("another launcher is running").
    ports = launcher_free_ports(2)
    first = launcher_start("--port-range", f"{ports[0]}-{ports[0]}", APPS / "launcher_app.py:app")
    first.wait_ready()
    second = launcher_start("--workers", "1", "--port", ports[1], APPS / "timeout_app.py:app")
    second.wait_ready()
    assert launcher_get(ports[0])[0] == 200 and launcher_get(ports[1])[0] == 200
    both = launcher_status_here(tmp_path)
    assert both.returncode == 0, both.stderr
    headlines = [line for line in both.stdout.splitlines() if line.startswith("evserve launcher pid")]
    assert len(headlines) == 2, both.stdout
    assert any(f"{ports[0]}-{ports[0]}" in h for h in headlines), both.stdout
    assert any(f":{ports[1]}, shared" in h for h in headlines), both.stdout
    assert both.stdout.count("--control-socket ") == 2, both.stdout
    for sock in re.findall(r"--control-socket (\S+)\)", both.stdout):
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600, sock
    # One left: its report alone, as before.
    assert first.stop() == 0
    one = launcher_status_here(tmp_path)
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith(f"evserve launcher pid {second.proc.pid}:"), one.stdout
    assert "--control-socket" not in one.stdout, one.stdout
    # None left: a one-line error.
    assert second.stop() == 0
    none = launcher_status_here(tmp_path)
    assert none.returncode == 1 and none.stdout == "", none
    assert none.stderr.count("\n") == 1 and "no launcher started in this directory" in none.stderr, none.stderr


def test_an_instance_whose_launcher_died_while_it_started_exits(launcher_start, tmp_path):
    # Bug: an instance sets its parent-death signal once its Python is up; a launcher killed
    # before that (the instance still starting) left the instance running as an orphan,
    # serving on the inherited socket forever.
    slow = tmp_path / "slowstart"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import os, time\nif os.environ.get('EVSERVE_INSTANCE') == '1':\n    time.sleep(1.5)\n"
    )
    port = launcher_free_ports(1)[0]
    env = {"PYTHONPATH": f"{slow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    p = launcher_start("--workers", "1", "--port", port, APPS / "launcher_app.py:app", env=env)
    p.wait_for(r"instance 0 starting \(pid (\d+)", 30)
    pid = int(re.search(r"instance 0 starting \(pid (\d+)", p.output())[1])
    p.proc.kill()
    p.proc.wait(10)
    launcher_wait(lambda: not launcher_alive(pid), 10, "the orphaned instance to exit")


def test_a_draining_instance_stuck_in_a_request_is_killed_at_timeout(launcher_start, tmp_path):
    # Bug: after SIGHUP an old instance stuck in a request was left to the drain limit
    # (--graceful-timeout, 30 s) instead of being killed at --timeout.
    marks = tmp_path / "marks"
    marks.mkdir()
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "2", "--port", port, "--timeout", "2",
                       APPS / "launcher_app.py:app", env={"LAUNCHER_TEST_MARKS": str(marks)})  # fmt: skip
    p.wait_ready()
    stuck = threading.Thread(
        target=lambda: _ignore_errors(lambda: launcher_get(port, "/sleep?s=60&mark=1", timeout=70)),
        daemon=True,
    )
    stuck.start()
    launcher_wait(lambda: list(marks.iterdir()), 5, "the request to be stuck in the app")
    stuck_pid = int(next(marks.iterdir()).name)
    started = time.monotonic()
    p.proc.send_signal(signal.SIGHUP)
    launcher_wait(lambda: not launcher_alive(stuck_pid), 10, "the stuck draining instance to go")
    took = time.monotonic() - started
    assert took < 4.5, f"killed {took:.1f}s after the reload began (--timeout 2)"
    assert p.stop() == 0, p.output()
