"""Bounded load for the recycling and scaling tests: client threads sending GETs to one port
until stopped, over keep-alive connections or a new connection per request, recording every
failure and which process answered.

Like browsers, curl and urllib3, a client whose reused keep-alive connection was closed by
the server before any byte of the response came back sends the (idempotent) GET again once
on a new connection (RFC 9112 section 9.3.1): a server or proxy may close an idle
connection at any moment, and nginx's graceful reload closes its idle client connections.
Those retries are counted apart; a request that fails on a new connection is a failure.

Not a test module: test_recycling.py and test_autoscale.py import it.
"""
import http.client
import re
import threading
import time

from test_launcher import launcher_wait


class Load:
    def __init__(self, port, path="/", threads=8, keep_alive=True, max_seconds=90):
        self.port = port
        self.path = path
        self.keep_alive = keep_alive
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.retried = 0
        self.answers = []  # (monotonic time, pid)
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _one(self, conn):
        headers = {} if self.keep_alive else {"Connection": "close"}
        conn.request("GET", self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode()
        with self.lock:
            if resp.status == 200:
                self.ok += 1
                pid = re.search(r"pid=(\d+)", body)
                self.answers.append((time.monotonic(), int(pid.group(1)) if pid else 0))
            else:
                self.failures.append(f"HTTP {resp.status}: {body[:200]}")

    def _run(self):
        conn = None
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            reused = conn is not None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                try:
                    self._one(conn)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused:
                        raise
                    # Closed while idle: once more on a new connection.
                    conn.close()
                    with self.lock:
                        self.retried += 1
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                    self._one(conn)
                if not self.keep_alive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def wait_for_requests(self, count, timeout=20):
        launcher_wait(lambda: self.ok >= count, timeout, f"{count} successful requests")

    def pids_since(self, when):
        with self.lock:
            return {pid for t, pid in self.answers if t >= when}

    def finish(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(20)
        return self.ok, self.failures


def status_instances(launcher):
    """{instance number: (pid, state)} from `evserve status` (the rows after the header)."""
    rows = {}
    lines = launcher.status().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("INST "))
    for line in lines[header + 1:]:
        cols = line.split()
        if len(cols) >= 4 and cols[0].isdigit():
            rows.setdefault(int(cols[0]), []).append((int(cols[1]) if cols[1].isdigit() else 0, cols[3]))
    return rows


def ready_count(launcher):
    return sum(1 for states in status_instances(launcher).values() if any(s == "ready" for _, s in states))


def log_lines(launcher, pattern):
    regex = re.compile(pattern)
    return [line for line in launcher.output().splitlines() if regex.search(line)]


def assert_one_recycle_at_a_time(launcher):
    """Between "recycling instance N" and "recycle: instance N now pid" no other recycle starts."""
    open_slot = None
    for line in launcher.output().splitlines():
        started = re.search(r"recycling instance (\d+) ", line)
        if started:
            assert open_slot is None, f"instance {started.group(1)} recycled while {open_slot} was:\n{launcher.output()}"
            open_slot = started.group(1)
        done = re.search(r"recycle: instance (\d+) now pid|recycle stopped at instance (\d+)", line)
        if done:
            assert open_slot in done.groups(), line
            open_slot = None
