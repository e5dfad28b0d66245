"""Shared machinery for the end-to-end tests: the real `evserve` command (the installed
console script, $EVSERVE_BIN) on real sockets.

What lives here (tests import the helpers with `from conftest import ...`):
- `Server`: one running `evserve` process (port, process, stderr/stdout captured to files,
  a state directory the test apps write into, fd and RSS probes).
- fixtures `serve` (stopped at the end of the test) and `module_serve` (stopped at the end of
  the module): factories `serve(app, *flags, env=..., cwd=..., bind_unix=...)` returning a
  ready `Server`.
- `run_evserve(*args)`: run the command to completion (for flags and start-up failures).
- raw HTTP: `Conn` (socket + buffer + deadline), `read_response` (status, headers, body with
  Content-Length / chunked / close-delimited framing, and whether the framing completed),
  `request` and `exchange` for one-shot use.
- `wait_for(predicate, timeout)`: the one bounded polling loop every test uses instead of sleeps.

Nothing here mocks the server: every helper talks to the real process over loopback.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "tests" / "apps"
BASE_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def evserve_bin():
    """The `evserve` console script under test (scripts/test.sh installs it in .venv-test)."""
    return os.environ.get("EVSERVE_BIN") or str(REPO / ".venv-test" / "bin" / "evserve")


def evserve_venv():
    """The virtualenv evserve is installed in (the one its instances run in)."""
    return Path(evserve_bin()).resolve().parent.parent


def base_python():
    return BASE_PYTHON if os.path.exists(BASE_PYTHON) else shutil.which("python3")


def wait_for(predicate, timeout, interval=0.02, message="condition"):
    """Polls `predicate` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def server_env(extra=None, unset=()):
    """The environment servers get: ours, minus `unset`, plus `extra`."""
    env = dict(os.environ)
    for name in unset:
        env.pop(name, None)
    env.update(extra or {})
    return env


class Server:
    """One `evserve` process serving `app`. Use `serve`/`module_serve` to get a ready one."""

    def __init__(self, app, flags, workdir, env=None, cwd=None, bind_unix=None, argv_prefix=()):
        self.app = app
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state = self.workdir / "state"
        self.state.mkdir(exist_ok=True)
        self.unix_path = bind_unix
        self.port = None if bind_unix else free_port()
        self.stderr_path = self.workdir / "stderr.log"
        self.stdout_path = self.workdir / "stdout.log"
        addr = ["--bind", f"unix:{bind_unix}"] if bind_unix else ["--port", str(self.port)]
        self.argv = [*argv_prefix, evserve_bin(), *addr, *flags, app]
        env = dict(env if env is not None else server_env())
        env.setdefault("EVSERVE_TEST_STATE", str(self.state))
        self.env = env
        self._stderr = open(self.stderr_path, "wb")
        self._stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            cwd=str(cwd or APPS),
            env=env,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def connect(self, timeout=5.0):
        if self.unix_path:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.unix_path)
            return s
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"evserve exited with {self.proc.returncode} before listening; "
                    f"argv={self.argv}\nstderr:\n{self.stderr()}"
                )
            try:
                self.connect(timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"evserve not accepting after {timeout}s\nstderr:\n{self.stderr()}")

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"evserve still running {timeout}s later\nstderr:\n{self.stderr()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        self._stderr.close()
        self._stdout.close()

    # Probes of the running process.
    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def state_file(self, name):
        return self.state / name

    def state_text(self, name):
        p = self.state / name
        return p.read_text() if p.exists() else ""

    def get(self, path="/", headers=(), **kw):
        extra = "".join(h + "\r\n" for h in headers)
        return request(self, f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode(), **kw)

    def get_json(self, path="/", headers=()):
        r = self.get(path, headers)
        assert r.status == 200, (r.status, r.body[:500], self.stderr()[-2000:])
        return json.loads(r.body)


class _Servers:
    def __init__(self, tmp_factory, name):
        self.tmp_factory = tmp_factory
        self.name = name
        self.started = []

    def __call__(self, app, *flags, env=None, cwd=None, bind_unix=None, ready=True, argv_prefix=()):
        workdir = self.tmp_factory.mktemp(f"{self.name}-srv")
        server = Server(app, flags, workdir, env=env, cwd=cwd, bind_unix=bind_unix, argv_prefix=argv_prefix)
        self.started.append(server)
        if ready:
            server.wait_ready()
        return server

    def stop_all(self):
        for server in self.started:
            server.stop()


@pytest.fixture
def serve(tmp_path_factory, request):
    servers = _Servers(tmp_path_factory, re.sub(r"\W", "_", request.node.name)[:40])
    yield servers
    servers.stop_all()


@pytest.fixture(scope="module")
def module_serve(tmp_path_factory, request):
    servers = _Servers(tmp_path_factory, request.module.__name__.rsplit(".", 1)[-1])
    yield servers
    servers.stop_all()


def run_evserve(*args, env=None, cwd=None, timeout=20.0):
    """Runs evserve to completion; returns the CompletedProcess (text stdout/stderr)."""
    return subprocess.run(
        [evserve_bin(), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        env=env if env is not None else server_env(),
        cwd=str(cwd or APPS),
        timeout=timeout,
    )


# ---------------------------------------------------------------------------------------
# Raw HTTP over a socket.


class Closed(Exception):
    """The peer closed (or reset) the connection before the expected bytes arrived."""


class Conn:
    """A client socket with a read buffer; every read has a deadline."""

    def __init__(self, server_or_port, timeout=5.0, sock=None):
        if sock is not None:
            self.sock = sock
        elif isinstance(server_or_port, Server):
            self.sock = server_or_port.connect(timeout)
        else:
            self.sock = socket.create_connection(("127.0.0.1", server_or_port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        if self.eof:
            raise Closed("connection closed")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data before the deadline") from None
        except ConnectionResetError:
            self.eof = True
            raise Closed("connection reset") from None
        if not chunk:
            self.eof = True
            raise Closed("connection closed")
        self.buf += chunk

    def read_until(self, marker, deadline):
        while marker not in self.buf:
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self, deadline, limit=None):
        """Reads until the peer closes; returns (bytes, closed_cleanly_before_deadline)."""
        while not self.eof:
            if limit is not None and len(self.buf) >= limit:
                break
            try:
                self._fill(deadline)
            except Closed:
                break
            except TimeoutError:
                out, self.buf = self.buf, b""
                return out, False
        out, self.buf = self.buf, b""
        return out, self.eof

    def closed_within(self, seconds):
        """True if the peer closes within `seconds` (any unread bytes are discarded)."""
        _, closed = self.read_to_close(time.monotonic() + seconds)
        return closed

    def read_response(self, method="GET", timeout=None):
        return read_response(self, method, timeout if timeout is not None else self.timeout)


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []  # (name, value) as received, in order
        self.body = b""
        self.framing = None  # "length", "chunked", "close" or "none"
        self.complete = False  # framing finished as announced
        self.trailers = []
        self.raw_head = b""
        self.interim = []  # 1xx responses seen before this one

    def header(self, name, default=None):
        values = self.all(name)
        return values[0] if values else default

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def has(self, name):
        return bool(self.all(name))

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.framing} complete={self.complete} {self.body[:80]!r}>"


def _parse_head(raw):
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    status, _, reason = rest.partition(b" ")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep, f"malformed response header line {line!r}"
        assert name == name.strip() and name, f"bad response header name {line!r}"
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return version.decode(), int(status), reason.decode("latin-1"), headers


def read_response(conn, method="GET", timeout=5.0):
    """Reads one final response (collecting 1xx ones). Raises Closed / TimeoutError if no
    head arrives; a body cut short comes back with `complete=False`."""
    deadline = time.monotonic() + timeout
    interim = []
    while True:
        raw = conn.read_until(b"\r\n\r\n", deadline)
        resp = Response()
        resp.raw_head = raw
        resp.version, resp.status, resp.reason, resp.headers = _parse_head(raw)
        if 100 <= resp.status < 200 and resp.status != 101:
            interim.append(resp)
            continue
        break
    resp.interim = interim
    te = ",".join(resp.all("Transfer-Encoding")).lower()
    cls = resp.all("Content-Length")
    try:
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            resp.framing, resp.complete = "none", True
        elif "chunked" in te:
            resp.framing = "chunked"
            _read_chunked(conn, resp, deadline)
        elif cls:
            resp.framing = "length"
            assert len(set(cls)) == 1, f"several Content-Length values {cls}"
            resp.body = conn.read_exact(int(cls[0]), deadline)
            resp.complete = True
        else:
            resp.framing = "close"
            resp.body, resp.complete = conn.read_to_close(deadline)
    except Closed:
        resp.body = resp.body + conn.buf
        conn.buf = b""
        resp.complete = False
    return resp


def _read_chunked(conn, resp, deadline):
    body = []
    try:
        while True:
            line = conn.read_until(b"\r\n", deadline)[:-2]
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while True:
                    t = conn.read_until(b"\r\n", deadline)
                    if t == b"\r\n":
                        break
                    resp.trailers.append(t)
                resp.complete = True
                return
            body.append(conn.read_exact(size, deadline))
            assert conn.read_exact(2, deadline) == b"\r\n", "chunk data not followed by CRLF"
    finally:
        resp.body = b"".join(body)


def request(server, raw, method=None, timeout=5.0):
    """Sends one raw request on a new connection and reads one response."""
    with Conn(server, timeout) as c:
        c.send(raw)
        if method is None:
            method = raw.split(b" ", 1)[0].decode("latin-1")
        return c.read_response(method, timeout)


def exchange(server, raw, timeout=5.0):
    """Sends raw bytes, then reads everything until the server closes (or the deadline).
    Returns (bytes, closed)."""
    with Conn(server, timeout) as c:
        c.send(raw)
        return c.read_to_close(time.monotonic() + timeout)


def parse_all(data, methods=None):
    """Parses a byte string holding several responses; returns the list of Responses."""
    fake = Conn(None, sock=_BytesSocket(data))
    out = []
    i = 0
    while fake.buf or not fake.eof:
        try:
            r = read_response(fake, (methods or [])[i] if methods and i < len(methods) else "GET", 1)
        except Closed:
            break
        out.append(r)
        i += 1
        if not r.complete:
            break
    return out


class _BytesSocket:
    def __init__(self, data):
        self.data = data

    def settimeout(self, t):
        pass

    def recv(self, n):
        out, self.data = self.data[:n], self.data[n:]
        return out

    def close(self):
        pass


def get(path, host="t", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
