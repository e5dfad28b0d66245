#!/usr/bin/env python3
"""Soak test: hold mixed load on one evserve instance and watch its RSS over time.

Starts evserve on tests/apps/soak_app.py, then for --duration seconds drives:
  * wrk (keep-alive) spreading requests over the GET routes and a POST echo;
  * a few Python threads doing the odd cases: chunked request bodies, clients that
    vanish mid-response and mid-body, HTTP/1.0, pipelined batches, Expect: 100-continue.

Every --interval seconds it samples the server's VmRSS and open fd count and prints a
row. Verdict (exit 1 on failure):
  * RSS at the end vs RSS after the warm-up grows by less than max(5%, 4 MiB);
  * the open fd count returns to its pre-load baseline once the load stops;
  * every streamed response's close() was called (streams opened == closed);
  * the odd-case clients saw no wrong answer; the server never died.

Stdlib only (plus wrk). The helpers here (Server, HttpReader, ...) are shared with
scripts/idle_connections.py and scripts/slow_clients.py.
"""

import argparse
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APPS_DIR = REPO / "tests" / "apps"
APP = "soak_app:application"
MIB = 1024 * 1024


# --------------------------------------------------------------------------- helpers


def find_binary(explicit=None):
    """The evserve command: --binary, $EVSERVE_BIN, or the one installed in .venv-test or
    on PATH."""
    candidates = [explicit, os.environ.get("EVSERVE_BIN"), str(REPO / ".venv-test" / "bin" / "evserve"),
                  shutil.which("evserve")]  # fmt: skip
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    sys.exit("evserve not found: install it (pip install .) or pass --binary")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    """Raises this process's soft fd limit to the hard limit; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def set_reset_on_close(sock):
    """Makes close() send RST instead of FIN (an abrupt client)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Server:
    """One evserve instance on 127.0.0.1, logging to a temporary file."""

    def __init__(self, binary, extra_args=(), app=APP, ready_timeout=30.0):
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="evserve-soak-")
        self.log_path = os.path.join(self.tmp, "server.log")
        self._log = open(self.log_path, "wb")
        argv = [binary, "--port", str(self.port), "--chdir", str(APPS_DIR),
                "--graceful-timeout", "5", *extra_args, app]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, start_new_session=True)
        self.pid = self.proc.pid
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("evserve exited at start-up:\n" + self.log_tail())
            with open(self.log_path, "rb") as f:
                if b"Listening at: http://127.0.0.1:%d" % self.port in f.read():
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("evserve not ready after %.0fs:\n%s" % (timeout, self.log_tail()))

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for pid %d" % self.pid)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def wait_fds(self, target, timeout):
        """Polls until the server holds at most `target` fds; returns the last count."""
        deadline = time.monotonic() + timeout
        count = self.fd_count()
        while count > target and time.monotonic() < deadline:
            time.sleep(0.1)
            count = self.fd_count()
        return count

    def stats(self, timeout=10.0):
        """The app's /stats counters."""
        status, _, body = request(self.port, "GET", "/stats", timeout=timeout)
        if status != 200:
            raise RuntimeError("/stats answered %d" % status)
        return json.loads(body)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def count_in_log(self, needle):
        with open(self.log_path, "rb") as f:
            return f.read().count(needle)

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL if the graceful stop overruns. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print("evserve did not stop within %.0fs of SIGTERM: killing it" % timeout)
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()


class HttpReader:
    """Reads HTTP/1.x responses from a blocking socket (with a timeout set on it)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def _line_block(self, terminator):
        while terminator not in self.buf:
            self._more()
        block, self.buf = self.buf.split(terminator, 1)
        return block

    def _exactly(self, n):
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def head(self):
        """Status and headers (lower-cased names) of the next response, interim ones too."""
        lines = self._line_block(b"\r\n\r\n").split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        return int(parts[1]), headers

    def body(self, headers, method="GET", status=200):
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self._line_block(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._line_block(b"\r\n")  # no trailers expected
                    return b"".join(chunks)
                chunks.append(self._exactly(size))
                self._exactly(2)
        if "content-length" in headers:
            return self._exactly(int(headers["content-length"]))
        while True:  # delimited by the close
            try:
                self._more()
            except EOFError:
                data, self.buf = self.buf, b""
                return data

    def response(self, method="GET"):
        """The next final response: (status, headers, body); interim 1xx are skipped."""
        while True:
            status, headers = self.head()
            if status >= 200:
                return status, headers, self.body(headers, method, status)


def request(port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def connect(port, timeout=10.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_checks(binary, extra_args, checks, args):
    """Starts evserve, runs each check(server, args) -> failures, stops it; prints the
    verdict and returns the exit status (1 when anything failed)."""
    server = Server(binary, extra_args)
    failures = []
    try:
        for check in checks:
            failures += check(server, args)
            if not server.alive():
                failures.append("evserve died during %s (exit %s)" % (check.__name__, server.proc.returncode))
                break
    finally:
        code = server.stop()
        if code not in (0, None) and not failures:
            failures.append("evserve exited with status %s after SIGTERM" % code)
        if failures:
            print("server log tail:\n" + server.log_tail(15))
        server.cleanup()
    if failures:
        print("FAIL")
        for f in failures:
            print("  - " + f)
        return 1
    print("PASS")
    return 0


# --------------------------------------------------------------------------- wrk load

WRK_SCRIPT = r"""
-- Mixed keep-alive load over soak_app's routes; each thread walks the list in turn.
local plan = {
  {"GET", "/hello", 8}, {"GET", "/environ?a=1&b=two", 4}, {"POST", "/echo", 4},
  {"GET", "/stream?n=4&size=2048", 2}, {"GET", "/file", 2}, {"GET", "/file-bytes", 2},
  {"GET", "/write", 2}, {"GET", "/missing", 1},
}
local errors_every = %(errors_every)d
local requests = {}
local error_request = nil
local i = 0

init = function(args)
  local body = string.rep("soak-body-", 100)
  for _, entry in ipairs(plan) do
    local method, path, weight = entry[1], entry[2], entry[3]
    local r
    if method == "POST" then
      r = wrk.format(method, path, {["Content-Type"] = "application/octet-stream"}, body)
    else
      r = wrk.format(method, path, {["X-Soak"] = "1"})
    end
    for _ = 1, weight do table.insert(requests, r) end
  end
  error_request = wrk.format("GET", "/error")
end

request = function()
  i = i + 1
  if errors_every > 0 and i %% errors_every == 0 then return error_request end
  return requests[(i %% #requests) + 1]
end
"""


class WrkLoad(threading.Thread):
    """Runs wrk in back-to-back segments until the deadline, summing its reports."""

    def __init__(self, port, deadline, segment, connections, threads, errors_every, tmp):
        super().__init__(daemon=True)
        self.port, self.deadline, self.segment = port, deadline, segment
        self.connections, self.threads = connections, threads
        self.script = os.path.join(tmp, "mixed.lua")
        with open(self.script, "w") as f:
            f.write(WRK_SCRIPT % {"errors_every": errors_every})
        self.requests = 0
        self.non_2xx = 0
        self.socket_errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
        self.segments = 0
        self.failures = []

    def run(self):
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining < 1:
                return
            seconds = max(1, int(min(self.segment, remaining)))
            argv = ["wrk", "-t%d" % self.threads, "-c%d" % self.connections,
                    "-d%ds" % seconds, "--timeout", "5s", "-s", self.script,
                    "http://127.0.0.1:%d/" % self.port]
            try:
                out = subprocess.run(argv, capture_output=True, text=True,
                                     timeout=seconds + 30).stdout
            except subprocess.TimeoutExpired:
                self.failures.append("wrk overran its %ds segment" % seconds)
                return
            self._add(out)

    def _add(self, out):
        done = re.search(r"(\d+) requests in", out)
        if not done:
            self.failures.append("unreadable wrk output: %r" % out[-300:])
            return
        self.segments += 1
        self.requests += int(done.group(1))
        non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        self.non_2xx += int(non.group(1)) if non else 0
        errs = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if errs:
            for key, value in zip(("connect", "read", "write", "timeout"), errs.groups()):
                self.socket_errors[key] += int(value)


# --------------------------------------------------------------------------- odd cases


class OddCases:
    """Python clients for what wrk cannot do; each case is a thread looping to a deadline."""

    def __init__(self, port, deadline, pause):
        self.port, self.deadline, self.pause = port, deadline, pause
        self.lock = threading.Lock()
        self.done = {}
        self.wrong = []
        self.rng = random.Random(1234)

    def threads(self):
        cases = [self.chunked_uploads, self.abort_mid_response, self.abort_mid_body,
                 self.http10, self.pipelined, self.expect_continue]
        return [threading.Thread(target=self._loop, args=(case,), daemon=True,
                                 name=case.__name__) for case in cases]

    def total(self):
        with self.lock:
            return sum(self.done.values())

    def _loop(self, case):
        name = case.__name__
        while time.monotonic() < self.deadline:
            try:
                count = case()
            except (OSError, EOFError, ValueError, AssertionError) as e:
                with self.lock:
                    self.wrong.append("%s: %s: %s" % (name, type(e).__name__, e))
                time.sleep(0.5)
                continue
            with self.lock:
                self.done[name] = self.done.get(name, 0) + count
            time.sleep(self.pause)

    @staticmethod
    def _expect(condition, message):
        if not condition:
            raise AssertionError(message)

    def chunked_uploads(self):
        """Chunked request bodies of random size and chunking, echoed back, keep-alive."""
        with connect(self.port) as sock:
            reader = HttpReader(sock)
            for _ in range(5):
                size = self.rng.choice([0, 1, 100, 5000, 70000, 200000])
                body = os.urandom(size)
                pieces, pos = [], 0
                while pos < size:
                    step = self.rng.randint(1, 9000)
                    piece = body[pos:pos + step]
                    pieces.append(b"%x\r\n%s\r\n" % (len(piece), piece))
                    pos += step
                sock.sendall(b"POST /chunked-echo HTTP/1.1\r\nHost: soak\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(pieces) + b"0\r\n\r\n")
                status, _, echoed = reader.response()
                self._expect(status == 200 and echoed == body,
                             "chunked echo: status %d, %d bytes back for %d" % (status, len(echoed), size))
        return 5

    def _vanishing_client(self):
        """A connection whose close() sends FIN or, half the time, RST."""
        sock = connect(self.port)
        if self.rng.random() < 0.5:
            set_reset_on_close(sock)
        return sock

    def abort_mid_response(self):
        """Reads the start of a 4 MiB streamed response, then vanishes (FIN or RST)."""
        with self._vanishing_client() as sock:
            sock.sendall(b"GET /stream?n=256&size=16384 HTTP/1.1\r\nHost: soak\r\n\r\n")
            got = 0
            while got < 32768:
                data = sock.recv(65536)
                self._expect(data, "stream closed early after %d bytes" % got)
                got += len(data)
        return 1

    def abort_mid_body(self):
        """Sends part of a request body (sized or chunked), then vanishes (FIN or RST)."""
        with self._vanishing_client() as sock:
            if self.rng.random() < 0.5:
                sock.sendall(b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 262144\r\n\r\n"
                             + b"b" * 50000)
            else:
                sock.sendall(b"POST /chunked-echo HTTP/1.1\r\nHost: soak\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n4000\r\n" + b"c" * 9000)
        return 1

    def http10(self):
        """HTTP/1.0 without keep-alive (closed by the server) and with keep-alive."""
        with connect(self.port) as sock:
            sock.sendall(b"GET /environ?v=10 HTTP/1.0\r\n\r\n")
            reader = HttpReader(sock)
            status, headers, body = reader.response()
            self._expect(status == 200 and b"HTTP/1.0" in body, "HTTP/1.0: %d %r" % (status, body[:80]))
            rest = b""
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                rest += data
            self._expect(rest == b"", "bytes after an HTTP/1.0 response: %r" % rest[:80])
        with connect(self.port) as sock:
            reader = HttpReader(sock)
            for n in range(3):
                sock.sendall(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                status, headers, body = reader.response()
                self._expect(status == 200 and body == b"Hello, soak!\n", "HTTP/1.0 keep-alive: %d" % status)
                if headers.get("connection", "").lower() != "keep-alive":
                    break
        return 2

    PIPELINE = [
        (b"GET /hello HTTP/1.1\r\nHost: soak\r\n\r\n", 200, b"Hello, soak!\n"),
        (b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello"),
        (b"GET /write HTTP/1.1\r\nHost: soak\r\n\r\n", 200, b"written iter"),
        (b"GET /nowhere HTTP/1.1\r\nHost: soak\r\n\r\n", 404, b"not found\n"),
        (b"GET /stream?n=3&size=10 HTTP/1.1\r\nHost: soak\r\n\r\n", 200, b"x" * 30),
        (b"POST /chunked-echo HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 200, b"abcde"),
    ]

    def pipelined(self):
        """A batch of requests in one write; answers must come back in order."""
        batch = [self.rng.choice(self.PIPELINE) for _ in range(16)]
        with connect(self.port) as sock:
            sock.sendall(b"".join(req for req, _, _ in batch))
            reader = HttpReader(sock)
            for n, (req, want_status, want_body) in enumerate(batch):
                status, _, body = reader.response()
                self._expect((status, body) == (want_status, want_body),
                             "pipelined #%d %r: got %d %r" % (n, req.split(b"\r\n")[0], status, body[:40]))
        return len(batch)

    def expect_continue(self):
        """Expect: 100-continue: the body goes only after the interim answer."""
        body = os.urandom(65536)
        with connect(self.port) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: soak\r\nExpect: 100-continue\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body))
            reader = HttpReader(sock)
            status, _ = reader.head()
            self._expect(status == 100, "expected 100 Continue, got %d" % status)
            sock.sendall(body)
            status, _, echoed = reader.response()
            self._expect(status == 200 and echoed == body, "100-continue echo: %d" % status)
        return 1


# --------------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (600)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between samples (10)")
    parser.add_argument("--warmup", type=float, default=60, help="seconds before the RSS baseline (60)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--errors-every", type=int, default=200,
                        help="every Nth wrk request hits the raising route (200; 0: never)")
    parser.add_argument("--odd-pause", type=float, default=0.02,
                        help="pause between odd-case iterations in each thread (0.02 s)")
    parser.add_argument("--binary", help="evserve binary (default: $EVSERVE_BIN, $CARGO_TARGET_DIR, target/)")
    args = parser.parse_args()
    if args.warmup >= args.duration:
        parser.error("--warmup must be shorter than --duration")
    if shutil.which("wrk") is None:
        sys.exit("wrk not found on PATH")
    raise_fd_limit()

    return run_checks(find_binary(args.binary), ["--keep-alive", "30"], [soak], args)


def soak(server, args):
    failures = []
    fd_baseline = server.fd_count()
    print("evserve pid %d on port %d; fd baseline %d; load for %.0fs, warm-up %.0fs"
          % (server.pid, server.port, fd_baseline, args.duration, args.warmup))
    start = time.monotonic()
    deadline = start + args.duration
    wrk = WrkLoad(server.port, deadline, args.interval, args.connections, args.wrk_threads,
                  args.errors_every, server.tmp)
    odd = OddCases(server.port, deadline, args.odd_pause)
    workers = [wrk] + odd.threads()
    for w in workers:
        w.start()

    samples = []  # (seconds, rss KiB, fds, requests)
    # "served" is the app's own request counter (live); "clients done" counts what wrk
    # (per finished segment) and the odd-case threads completed.
    print("%8s %10s %6s %12s %13s %11s" % ("time s", "RSS MiB", "fds", "served", "clients done", "py blocks"))
    next_at = start
    while True:
        now = time.monotonic()
        if not server.alive():
            failures.append("evserve died during the soak (exit %s)" % server.proc.returncode)
            break
        if now >= next_at:
            t = now - start
            rss, fds = server.rss_kib(), server.fd_count()
            done = wrk.requests + odd.total()
            try:
                stats = server.stats()
                served, blocks = str(stats["requests"]), str(stats["allocated_blocks"])
            except (OSError, ValueError, RuntimeError) as e:
                served = blocks = "?"
                failures.append("/stats failed at %.0fs: %s" % (t, e))
            samples.append((t, rss, fds, done))
            print("%8.0f %10.1f %6d %12s %13d %11s" % (t, rss / 1024, fds, served, done, blocks), flush=True)
            if now >= deadline:
                break
            next_at = min(next_at + args.interval, deadline)
        time.sleep(max(0.0, min(next_at, deadline) - time.monotonic()))

    for w in workers:
        w.join(timeout=60)
        if w.is_alive():
            failures.append("load thread %s did not stop" % w.name)
    if not server.alive():
        return failures + ["evserve died (exit %s)" % server.proc.returncode]

    # The load is over: every connection closes, so the fds must return to baseline.
    stopped = time.monotonic()
    fds_after = server.wait_fds(fd_baseline, 15)
    print("fds: baseline %d, 15s after the load %d" % (fd_baseline, fds_after))
    if fds_after > fd_baseline:
        failures.append("fd leak: %d open 15s after the load, %d before" % (fds_after, fd_baseline))
        # Held until a server timeout (body 30s, keep-alive 30s here) or for good?
        late = server.wait_fds(fd_baseline, 45)
        print("fds %.0fs after the load: %d" % (time.monotonic() - stopped, late))

    stats = server.stats()
    print("app counters: %s" % json.dumps(stats))
    if stats["streams_opened"] != stats["streams_closed"]:
        failures.append("close() not called on %d of %d streamed responses"
                        % (stats["streams_opened"] - stats["streams_closed"], stats["streams_opened"]))

    print("wrk: %d requests in %d segments, %d non-2xx/3xx (expected: /error and /missing), "
          "socket errors %s" % (wrk.requests, wrk.segments, wrk.non_2xx, wrk.socket_errors))
    print("odd cases: %s" % json.dumps(odd.done, sort_keys=True))
    failures += wrk.failures
    if wrk.requests == 0:
        failures.append("wrk completed no request")
    if odd.wrong:
        failures.append("%d odd-case failures, first: %s" % (len(odd.wrong), "; ".join(odd.wrong[:5])))
    for name in ("chunked_uploads", "abort_mid_response", "abort_mid_body", "http10",
                 "pipelined", "expect_continue"):
        if odd.done.get(name, 0) == 0:
            failures.append("odd case %s never completed" % name)

    failures += rss_verdict(samples, args.warmup)
    return failures


def rss_verdict(samples, warmup):
    after_warmup = [s for s in samples if s[0] >= warmup]
    if len(after_warmup) < 2:
        return ["too few samples after the warm-up to judge RSS"]
    base, end = after_warmup[0][1], after_warmup[-1][1]
    growth = end - base
    allowed = max(0.05 * base, 4 * 1024)
    # Least-squares slope over the post-warm-up samples, for the report.
    ts = [s[0] for s in after_warmup]
    rs = [s[1] for s in after_warmup]
    mt, mr = sum(ts) / len(ts), sum(rs) / len(rs)
    var = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (r - mr) for t, r in zip(ts, rs)) / var if var else 0.0
    print("RSS: start %.1f MiB, after warm-up (%.0fs) %.1f MiB, end %.1f MiB, peak %.1f MiB; "
          "growth after warm-up %+.2f MiB (allowed < %.2f MiB); trend %+.3f MiB/min"
          % (samples[0][1] / 1024, after_warmup[0][0], base / 1024, end / 1024,
             max(s[1] for s in samples) / 1024, growth / 1024, allowed / 1024, slope * 60 / 1024))
    # A leak keeps growing; a pool or allocator high-water mark levels off. Say which.
    second_half = [s for s in after_warmup if s[0] >= (after_warmup[0][0] + after_warmup[-1][0]) / 2]
    print("RSS over the second half of the post-warm-up run (%.0fs..%.0fs): %+.2f MiB"
          % (second_half[0][0], second_half[-1][0], (second_half[-1][1] - second_half[0][1]) / 1024))
    if growth >= allowed:
        return ["RSS grew %.2f MiB after the warm-up (limit %.2f MiB)" % (growth / 1024, allowed / 1024)]
    return []


if __name__ == "__main__":
    sys.exit(main())
