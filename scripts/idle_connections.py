#!/usr/bin/env python3
"""Memory cost of idle keep-alive connections on one evserve instance.

Starts evserve (soak_app's /hello), warms it up with a few hundred requests, records
RSS, then opens --connections connections (default 10000) in batches; each sends one
complete keep-alive request and reads its answer, so every connection has served a
request and sits idle. RSS is measured again and (after - before) / N reported in bytes.
Then checks every connection is still open, that idle connections still serve, and that
a fresh request is answered quickly; closes them all and checks the server's fds return
to their baseline. Exit 1 if bytes per connection exceed --limit (default 4096) or a
check fails.
"""

import argparse
import selectors
import socket
import sys
import time

from soak import HttpReader, connect, find_binary, raise_fd_limit, run_checks

HELLO = b"GET /hello HTTP/1.1\r\nHost: idle\r\n\r\n"
HELLO_BODY = b"Hello, soak!\n"


def warm_up(port, keepalive_requests=300, fresh=50):
    with connect(port) as sock:
        reader = HttpReader(sock)
        for _ in range(keepalive_requests):
            sock.sendall(HELLO)
            status, _, body = reader.response()
            if (status, body) != (200, HELLO_BODY):
                raise RuntimeError("warm-up answered %d %r" % (status, body[:60]))
    for _ in range(fresh):
        with connect(port) as sock:
            sock.sendall(HELLO)
            HttpReader(sock).response()


def open_batch(port, count, timeout):
    """Opens `count` connections, sends one request on each, reads every answer."""
    socks = []
    try:
        for _ in range(count):
            socks.append(connect(port))
        for s in socks:
            s.sendall(HELLO)
            s.setblocking(False)
        pending = {s: b"" for s in socks}
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                data = s.recv(4096)
                if not data:
                    raise RuntimeError("a connection closed before its answer")
                pending[s] += data
                got = pending[s]
                if b"\r\n\r\n" in got and got.endswith(HELLO_BODY):
                    if not got.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError("unexpected answer %r" % got[:60])
                    sel.unregister(s)
                    del pending[s]
        sel.close()
        if pending:
            raise RuntimeError("%d of %d answers missing after %.0fs" % (len(pending), count, timeout))
        return socks
    except BaseException:
        for s in socks:
            s.close()
        raise


def still_open(sock):
    """True when the peer has neither closed nor sent anything unexpected."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False  # b"" (closed) or bytes nobody asked for


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--limit", type=int, default=4096, help="max bytes per idle connection (4096)")
    parser.add_argument("--binary")
    args = parser.parse_args()
    hard = raise_fd_limit()
    if hard < args.connections + 100:
        sys.exit("fd hard limit %d too low for %d connections" % (hard, args.connections))

    extra = ["--keep-alive", "600", "--max-connections", str(args.connections + 100)]
    return run_checks(find_binary(args.binary), extra, [measure], args)


def measure(server, args):
    failures = []
    n = args.connections
    fd_baseline = server.fd_count()
    warm_up(server.port)
    server.wait_fds(fd_baseline, 5)
    rss_before = server.rss_kib()
    print("evserve pid %d: after warm-up RSS %.1f MiB, %d fds" % (server.pid, rss_before / 1024, fd_baseline))

    socks = []
    started = time.monotonic()
    try:
        while len(socks) < n:
            socks += open_batch(server.port, min(args.batch, n - len(socks)), timeout=30)
        print("opened %d connections, each served one request, in %.1fs"
              % (len(socks), time.monotonic() - started))
        fds = server.fd_count()
        if fds != fd_baseline + n:
            failures.append("server holds %d fds, expected %d" % (fds, fd_baseline + n))
        rss_after = server.rss_kib()
        per_conn = (rss_after - rss_before) * 1024 / n
        print("RSS with %d idle connections: %.1f MiB (+%.1f MiB): %.0f bytes per connection (limit %d)"
              % (n, rss_after / 1024, (rss_after - rss_before) / 1024, per_conn, args.limit))
        if per_conn > args.limit:
            failures.append("%.0f bytes per idle connection, above %d" % (per_conn, args.limit))

        closed = sum(1 for s in socks if not still_open(s))
        print("connections closed by the server while idle: %d" % closed)
        if closed:
            failures.append("%d idle connections were closed" % closed)

        t0 = time.monotonic()
        with connect(server.port, timeout=5) as sock:
            sock.sendall(HELLO)
            status, _, body = HttpReader(sock).response()
        fresh = time.monotonic() - t0
        print("fresh request with %d idle connections: %d in %.1f ms" % (n, status, fresh * 1000))
        if (status, body) != (200, HELLO_BODY) or fresh > 1.0:
            failures.append("fresh request: %d %r in %.3fs" % (status, body[:40], fresh))

        reused_ok = 0
        sample = socks[:: max(1, n // 100)]
        for s in sample:
            s.setblocking(True)
            s.settimeout(5)
            s.sendall(HELLO)
            status, _, body = HttpReader(s).response()
            if (status, body) == (200, HELLO_BODY):
                reused_ok += 1
        print("idle connections reused for a second request: %d of %d served" % (reused_ok, len(sample)))
        if reused_ok != len(sample):
            failures.append("only %d of %d idle connections served a second request" % (reused_ok, len(sample)))
    finally:
        for s in socks:
            s.close()
    fds_end = server.wait_fds(fd_baseline, 15)
    print("fds after closing them: %d (baseline %d)" % (fds_end, fd_baseline))
    if fds_end > fd_baseline:
        failures.append("fds did not return to baseline: %d > %d" % (fds_end, fd_baseline))
    return failures


if __name__ == "__main__":
    sys.exit(main())
