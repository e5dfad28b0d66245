"""evserve under systemd, without systemd as PID 1: `systemd-socket-activate` (Debian's
systemd package) binds the sockets and starts evserve on the first connection with
LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, exactly as a .socket unit does, and NOTIFY_SOCKET
points at a datagram socket this test binds and reads, standing in for the service manager.

Each notification is recorded with its arrival time and the pid that sent it (SO_PASSCRED),
so the tests check what was said, when, and by whom (NotifyAccess=main: only the main pid).
"""

import http.client
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import APPS, evserve_bin, free_port, wait_for
from test_launcher import launcher_get

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
pytestmark = pytest.mark.skipif(
    SOCKET_ACTIVATE is None,
    reason="systemd-socket-activate is not installed (apt-get install systemd)",
)

APP = str(APPS / "launcher_app.py") + ":app"
START_TIMEOUT = 30.0


class Notifications:
    """The test's NOTIFY_SOCKET: every datagram, with its arrival time and sender pid."""

    def __init__(self, address):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, sender pid, {field: value})
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        space = socket.CMSG_SPACE(struct.calcsize("3i"))
        while not self.stopped:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, space)
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
            fields = dict(
                line.split("=", 1) for line in data.decode().splitlines() if "=" in line
            )
            with self.lock:
                self.messages.append((time.monotonic(), pid, fields))

    def close(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()

    def all(self, key=None, after=0.0):
        with self.lock:
            return [m for m in self.messages if m[0] > after and (key is None or key in m[2])]

    def wait(self, key, after=0.0, timeout=START_TIMEOUT):
        """The first message carrying `key` that arrived after `after`."""
        found = wait_for(lambda: self.all(key, after), timeout, message=f"{key} from evserve")
        return found[0]


class Activated:
    """evserve run by systemd-socket-activate: `listen` addresses, `names` for --fdname."""

    def __init__(
        self, tmp_path, listen, flags, names=None, notify=None, env=None, command=None, options=()
    ):
        self.listen = listen
        self.stderr_path = tmp_path / f"stderr-{len(list(tmp_path.iterdir()))}.log"
        argv = [SOCKET_ACTIVATE]
        for address in listen:
            argv += ["-l", address]
        if names:
            argv.append("--fdname=" + ":".join(names))
        # systemd-socket-activate passes on only PATH, HOME, TERM, USER and these.
        for name, value in {**(env or {}), **({"NOTIFY_SOCKET": notify} if notify else {})}.items():
            argv += ["-E", f"{name}={value}"]
        argv += [*options, *(command or [evserve_bin()]), *flags, APP]
        self.argv = argv
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            cwd=str(APPS),
            start_new_session=True,
        )
        # systemd-socket-activate binds, then waits for a connection before it execs evserve.
        for address in listen:
            if not address.startswith("/"):
                wait_for(lambda a=address: _bound(a), 10, message=f"{address} bound")
            else:
                wait_for(lambda a=address: os.path.exists(a), 10, message=f"{address} bound")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._stderr.close()


def _bound(address):
    host, port = address.rsplit(":", 1)
    probe = socket.socket()
    try:
        probe.bind((host, int(port)))
        return False
    except OSError:
        return True
    finally:
        probe.close()


def get(port, path="/", timeout=10.0):
    return launcher_get(port, path, timeout)


def get_unix(path, timeout=10.0):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


class FirstRequest(threading.Thread):
    """The connection that makes systemd-socket-activate start evserve: its answer must
    come back, since the socket was listening (systemd's) before evserve existed."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.result = None
        self.answered_at = None
        self.start()

    def run(self):
        try:
            self.result = get(self.port, timeout=START_TIMEOUT)
        except OSError as e:
            self.result = e
        self.answered_at = time.monotonic()


def consecutive_free_ports(count):
    for _ in range(100):
        base = free_port()
        if base + count < 65000 and all(_free(p) for p in range(base, base + count)):
            return list(range(base, base + count))
    raise RuntimeError("no run of free ports")


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture
def notify(tmp_path):
    made = []

    def make(abstract=False):
        address = f"@evserve-test-{os.getpid()}-{len(made)}-{time.monotonic_ns()}" if abstract \
            else str(tmp_path / f"notify-{len(made)}")
        n = Notifications(address)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


@pytest.fixture
def activate(tmp_path):
    started = []

    def start(*args, **kw):
        a = Activated(tmp_path, *args, **kw)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


class Load(threading.Thread):
    """`threads` clients sending requests in a loop until stopped; failures recorded."""

    def __init__(self, port, threads=4):
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failures = []
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self._client, daemon=True) for _ in range(threads)]
        for w in self.workers:
            w.start()

    def _client(self):
        while not self.stopped.is_set():
            try:
                status, _ = get(self.port)
                with self.lock:
                    if status == 200:
                        self.ok += 1
                    else:
                        self.failures.append(status)
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(repr(e))

    def finish(self):
        self.stopped.set()
        for w in self.workers:
            w.join(15)
        return self.ok, self.failures


def assert_from(message, pid):
    assert message[1] == pid, f"notification from pid {message[1]}, not the main pid {pid}"


def test_a_single_instance_takes_the_activated_socket_and_notifies(activate, notify, tmp_path):
    port, unused = free_port(), free_port()
    n = notify()
    a = activate([f"127.0.0.1:{port}"], ["--port", str(unused)], names=["web"], notify=n.address)
    assert n.all() == [], "evserve must not run before the first connection"
    first = FirstRequest(port)
    ready_at, sender, ready = n.wait("READY")
    assert_from((ready_at, sender), a.proc.pid)
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(a.proc.pid)
    assert ready["STATUS"] == f"serving {APP} on http://127.0.0.1:{port}", ready
    # READY means serving: a request sent now is answered at once.
    assert get(port, timeout=5)[0] == 200
    first.join(START_TIMEOUT)
    assert first.result is not None and not isinstance(first.result, Exception), first.result
    assert first.result[0] == 200, "the connection that started evserve was lost"
    assert f'using the socket systemd passed: http://127.0.0.1:{port} (fd 3, "web")' in a.stderr()
    assert not _bound(f"127.0.0.1:{unused}"), "evserve bound --port instead of using systemd's"
    term_at = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    _, sender, stopping = n.wait("STOPPING", after=term_at, timeout=10)
    assert sender == a.proc.pid and stopping["STOPPING"] == "1"
    assert stopping["STATUS"].startswith("stopping: draining"), stopping
    assert a.proc.wait(15) == 0, a.stderr()
    assert len(n.all("READY")) == 1
    assert n.all("WATCHDOG") == [], "no watchdog pings without WATCHDOG_USEC"


def test_a_single_instance_on_an_activated_unix_socket_leaves_it_in_place(
    activate, notify, tmp_path
):
    path = str(tmp_path / "app.sock")
    n = notify(abstract=True)
    a = activate([path], [], notify=n.address)
    answer = get_unix(path)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    n.wait("READY")
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(15) == 0, a.stderr()
    # The socket is systemd's: evserve never unlinks it.
    assert os.path.exists(path)


def test_workers_share_the_activated_socket_and_reload_fails_no_request(
    activate, notify, tmp_path
):
    port = free_port()
    n = notify(abstract=True)
    a = activate([f"127.0.0.1:{port}"], ["--workers", "2"], names=["web"], notify=n.address)
    first = FirstRequest(port)
    ready_at, sender, ready = n.wait("READY")
    assert_from((ready_at, sender), a.proc.pid)
    assert ready["MAINPID"] == str(a.proc.pid), "MAINPID is the launcher"
    assert ready["STATUS"] == f"2 instances ready on 127.0.0.1:{port}, shared", ready
    assert "ready: 2 instances" in a.stderr(), "READY before the launcher saw every instance ready"
    first.join(START_TIMEOUT)
    assert first.result and first.result[0] == 200, first.result
    load = Load(port)
    wait_for(lambda: load.ok >= 50, 20, message="requests before the reload")
    hup_at = time.monotonic()
    a.proc.send_signal(signal.SIGHUP)
    reloading_at, sender, reloading = n.wait("RELOADING", after=hup_at, timeout=10)
    assert sender == a.proc.pid and reloading["RELOADING"] == "1"
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert reloading["STATUS"] == "reloading: 0 of 2 replaced", reloading
    again_at, _, again = n.wait("READY", after=reloading_at, timeout=40)
    assert "reload: done" in a.stderr(), "READY=1 came before the reload was done"
    assert again["STATUS"] == ready["STATUS"]
    statuses = [m[2]["STATUS"] for m in n.all("STATUS", after=hup_at) if m[0] <= again_at]
    assert "reloading: 1 of 2 replaced" in statuses, statuses
    done = load.ok
    wait_for(lambda: load.ok >= done + 50, 20, message="requests after the reload")
    ok, failures = load.finish()
    assert failures == [], failures[:5]
    assert ok > 100
    term_at = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    _, sender, stopping = n.wait("STOPPING", after=term_at, timeout=10)
    assert sender == a.proc.pid
    assert a.proc.wait(20) == 0, a.stderr()
    senders = {m[1] for m in n.all()}
    assert senders == {a.proc.pid}, f"instances must not notify systemd: {senders}"


def test_main_pid_is_the_launcher_when_run_as_python_m_evserve(activate, notify):
    port = free_port()
    n = notify()
    python = str(Path(evserve_bin()).parent / "python")
    a = activate(
        [f"127.0.0.1:{port}"], ["--workers", "1"], notify=n.address,
        command=[python, "-m", "evserve"],
    )
    FirstRequest(port)
    _, sender, ready = n.wait("READY")
    assert sender == a.proc.pid and ready["MAINPID"] == str(a.proc.pid)
    assert ready["STATUS"] == f"1 instance ready on 127.0.0.1:{port}, shared", ready
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(20) == 0, a.stderr()


def test_port_range_takes_one_socket_per_port_and_keeps_it_across_restarts(
    activate, notify, tmp_path
):
    ports = consecutive_free_ports(2)
    n = notify()
    # Listed in reverse order: sockets are matched by the port they are bound to.
    a = activate(
        [f"127.0.0.1:{ports[1]}", f"127.0.0.1:{ports[0]}"],
        ["--port-range", f"{ports[0]}-{ports[1]}"],
        names=["second", "first"],
        notify=n.address,
    )
    first = FirstRequest(ports[0])
    _, _, ready = n.wait("READY")
    assert ready["STATUS"] == f"2 instances ready on 127.0.0.1:{ports[0]}-{ports[1]}", ready
    first.join(START_TIMEOUT)
    assert first.result and first.result[0] == 200, first.result
    pids = {}
    for port in ports:
        status, body = get(port)
        assert status == 200
        pids[port] = int(body.split()[0].split("=")[1])
    assert len(set(pids.values())) == 2, "one instance per port"
    for pid in pids.values():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        leaked = names & {"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC"}
        assert not leaked, f"systemd's variables reached an instance: {leaked}"
    # A crashed instance is replaced on the same (systemd's) socket.
    os.kill(pids[ports[1]], signal.SIGKILL)
    wait_for(
        lambda: _pid_on(ports[1]) not in (None, pids[ports[1]]), 20, message="instance replaced"
    )
    stderr = a.stderr()
    assert f'(fd 3, "second")' in stderr and f'(fd 4, "first")' in stderr, stderr
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(20) == 0, a.stderr()


NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_ready_waits_for_nginx_and_preloaded_instances_use_the_activated_sockets(
    activate, notify, tmp_path
):
    ports = consecutive_free_ports(3)
    listen, backends = ports[0], ports[1:]
    n = notify()
    a = activate(
        [f"127.0.0.1:{p}" for p in backends],
        [
            "--port-range", f"{backends[0]}-{backends[1]}", "--preload",
            "--nginx-conf", str(tmp_path / "nginx" / "nginx.conf"),
            "--listen", f"127.0.0.1:{listen}", "--nginx",
        ],
        notify=n.address,
        env={"PATH": os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin"},
    )
    FirstRequest(backends[0])
    _, sender, ready = n.wait("READY")
    assert sender == a.proc.pid
    assert ready["STATUS"] == (
        f"2 instances ready on 127.0.0.1:{backends[0]}-{backends[1]}; "
        f"nginx on http://127.0.0.1:{listen}"
    ), ready
    # READY=1 only once nginx answers.
    assert get(listen, timeout=5)[0] == 200
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0, a.stderr()


def _pid_on(port):
    try:
        status, body = get(port, timeout=2)
    except (OSError, http.client.HTTPException):
        return None
    return int(body.split()[0].split("=")[1]) if status == 200 else None


def test_a_port_range_that_does_not_match_the_sockets_is_a_one_line_error(activate, tmp_path):
    ports = consecutive_free_ports(2)
    a = activate([f"127.0.0.1:{ports[0]}"], ["--port-range", f"{ports[0]}-{ports[1]}"])
    trigger = socket.create_connection(("127.0.0.1", ports[0]), timeout=5)
    try:
        assert a.proc.wait(20) == 1
    finally:
        trigger.close()
    errors = [l for l in a.stderr().splitlines() if l.startswith("evserve: error:")]
    assert len(errors) == 1, a.stderr()
    assert f"--port-range {ports[0]}-{ports[1]} needs a socket on port {ports[1]}" in errors[0]
    assert not _bound(f"127.0.0.1:{ports[1]}"), "no fallback to binding the missing port"


def test_an_accept_yes_connection_socket_is_a_one_line_error(activate):
    port = free_port()
    a = activate([f"127.0.0.1:{port}"], [], options=["--accept"])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        wait_for(lambda: "evserve: error:" in a.stderr(), 20, message="the error line")
    errors = [l for l in a.stderr().splitlines() if l.startswith("evserve: error:")]
    assert len(errors) == 1 and "is not listening" in errors[0] and "Accept=no" in errors[0], errors


@pytest.mark.parametrize("mode", [[], ["--workers", "2"]], ids=["instance", "launcher"])
@pytest.mark.parametrize(
    "fds, redirect, expected",
    [
        ("abc", "", "invalid LISTEN_FDS"),
        ("-1", "", "invalid LISTEN_FDS"),
        ("3", "", "Bad file descriptor"),
        ("1", "3</etc/hostname", "not a TCP or Unix stream socket"),
    ],
    ids=["not-a-number", "negative", "fds-not-open", "not-a-socket"],
)
def test_bad_listen_fds_values_are_a_one_line_error(mode, fds, redirect, expected, tmp_path):
    port = free_port()
    flags = " ".join([*mode, "--port", str(port)])
    script = f'LISTEN_PID=$$ LISTEN_FDS="{fds}" exec {evserve_bin()} {flags} {APP} {redirect}'
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    done = subprocess.run(
        ["sh", "-c", script], env=env, cwd=str(APPS), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("evserve: error: socket activation:"), lines
    assert expected in lines[0], lines
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr


def test_listen_fds_for_another_process_is_ignored_with_a_warning(serve):
    server = serve(APP, env={**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": "1"})
    assert server.get("/").status == 200
    assert "LISTEN_PID is 1, not this process" in server.stderr()


@pytest.mark.parametrize("mode", [[], ["--workers", "2"]], ids=["instance", "launcher"])
def test_watchdog_pings_at_half_the_interval_and_stop_when_the_loop_hangs(
    mode, activate, notify, tmp_path
):
    port = free_port()
    n = notify()
    # WatchdogSec=2s: a ping about every second.
    a = activate(
        [f"127.0.0.1:{port}"], mode, notify=n.address, env={"WATCHDOG_USEC": "2000000"}
    )
    FirstRequest(port)
    ready_at, _, _ = n.wait("READY")
    wait_for(lambda: len(n.all("WATCHDOG", after=ready_at)) >= 5, 15, message="5 pings")
    pings = n.all("WATCHDOG", after=ready_at)
    assert {m[1] for m in pings} == {a.proc.pid}
    gaps = sorted(b[0] - a_[0] for a_, b in zip(pings, pings[1:]))
    # Half of WatchdogSec, a little early or late, never near the whole of it.
    assert all(0.4 <= g <= 1.8 for g in gaps), gaps
    assert 0.7 <= gaps[len(gaps) // 2] <= 1.3, gaps
    # The pings come from the loop that must not hang: they stop with it and come back.
    if mode:
        hang = lambda: os.kill(a.proc.pid, signal.SIGSTOP)  # noqa: E731
        resume = lambda: os.kill(a.proc.pid, signal.SIGCONT)  # noqa: E731
    else:
        stuck = threading.Thread(target=lambda: get(port, "/sleep?s=3", timeout=20), daemon=True)
        hang, resume = stuck.start, (lambda: stuck.join(20))
    hung_at = time.monotonic()
    hang()
    time.sleep(2.5)  # the hang itself, longer than the longest gap between pings
    quiet = n.all("WATCHDOG", after=hung_at + 0.5)
    resume()
    assert [m for m in quiet if m[0] < hung_at + 2.5] == [], "pings went on while the loop hung"
    resumed = time.monotonic()
    wait_for(lambda: n.all("WATCHDOG", after=resumed), 5, message="pings after the hang")
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(20) == 0, a.stderr()


DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def unit_settings(path):
    settings = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), value.strip())
    return settings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_unit_templates_pass_systemd_analyze_verify(tmp_path):
    service = unit_settings(DEPLOY / "evserve.service")
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    graceful = int(service["ExecStart"].split("--graceful-timeout ")[1].split()[0])
    assert int(service["TimeoutStopSec"]) > graceful, "systemd must not cut a drain short"
    assert unit_settings(DEPLOY / "evserve.socket")["Accept"] == "no"
    # The template's ExecStart names a virtualenv that does not exist here: point it at ours.
    text = (DEPLOY / "evserve.service").read_text()
    (tmp_path / "evserve.service").write_text(
        text.replace("/opt/myproject/venv/bin/evserve", evserve_bin())
    )
    shutil.copy(DEPLOY / "evserve.socket", tmp_path / "evserve.socket")
    done = subprocess.run(
        ["systemd-analyze", "verify", tmp_path / "evserve.socket", tmp_path / "evserve.service"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
