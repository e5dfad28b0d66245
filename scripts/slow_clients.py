#!/usr/bin/env python3
"""Hostile clients against one evserve instance (a manual check, about 30 s).

Starts evserve on soak_app with --header-timeout and --write-timeout (default 5 s) and:
  1. trickle: --tricklers connections (default 1000) send a request head one byte a
     second while a normal client keeps making requests; reports the normal client's
     latency (p50/max) and when the server closed the tricklers (must be at the head
     timeout, give or take);
  2. stalled reader: a client asks for a 100 MiB streamed response and never reads;
     the server must drop it at the write timeout with its RSS bounded (peak reported)
     and call the response's close();
  3. vanishing clients: clients that go away mid-body and mid-response (FIN or RST);
     the server's fd count must return to its baseline; and a client whose FIN arrives
     while the loop is busy in the app must still be closed at once.
Exit 1 when a check fails.
"""

import argparse
import selectors
import socket
import sys
import threading
import time

from soak import (MIB, HttpReader, connect, find_binary, percentile, raise_fd_limit, run_checks,
                  set_reset_on_close)

HELLO = b"GET /hello HTTP/1.1\r\nHost: slow\r\n\r\n"
TRICKLE_HEAD = (b"GET /hello HTTP/1.1\r\nHost: slow\r\nX-Trickle: " + b"t" * 60 + b"\r\n\r\n")


class NormalClient(threading.Thread):
    """Fresh-connection requests every `pause` seconds until stopped; records latency."""

    def __init__(self, port, pause=0.05):
        super().__init__(daemon=True)
        self.port, self.pause = port, pause
        self.stop = threading.Event()
        self.latencies = []
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with connect(self.port, timeout=10) as sock:
                    sock.sendall(HELLO)
                    status, _, _ = HttpReader(sock).response()
                if status != 200:
                    self.errors.append("status %d" % status)
            except (OSError, EOFError, ValueError) as e:
                self.errors.append("%s: %s" % (type(e).__name__, e))
            self.latencies.append(time.monotonic() - t0)
            self.stop.wait(self.pause)


def trickle(server, args):
    failures = []
    n = args.tricklers
    socks, opened_at = [], {}
    for _ in range(n):
        s = connect(server.port)
        s.setblocking(False)
        socks.append(s)
        opened_at[s] = time.monotonic()
    normal = NormalClient(server.port)
    normal.start()
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed_after, answered = {}, {}
    sent = {s: 0 for s in socks}
    deadline = time.monotonic() + args.header_timeout + 10
    next_byte = time.monotonic()
    try:
        while len(closed_after) < n and time.monotonic() < deadline:
            if time.monotonic() >= next_byte:
                for s in socks:
                    if s in closed_after or sent[s] >= len(TRICKLE_HEAD) - 1:
                        continue  # never the last byte: the head must stay incomplete
                    try:
                        sent[s] += s.send(TRICKLE_HEAD[sent[s]:sent[s] + 1])
                    except BlockingIOError:
                        pass
                    except OSError:
                        pass  # a reset; the read side records the close
                next_byte += 1.0
            for key, _ in sel.select(timeout=max(0.0, min(0.2, next_byte - time.monotonic()))):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    answered[s] = answered.get(s, b"") + data
                    continue
                closed_after[s] = time.monotonic() - opened_at[s]
                sel.unregister(s)
    finally:
        normal.stop.set()
        normal.join(15)
        sel.close()
        for s in socks:
            s.close()

    times = sorted(closed_after.values())
    got_408 = sum(1 for d in answered.values() if d.startswith(b"HTTP/1.1 408"))
    lat = normal.latencies
    print("trickle: %d connections sending one byte a second, --header-timeout %d"
          % (n, args.header_timeout))
    if times:
        print("  closed by the server: %d of %d, after %.2fs (min) / %.2fs (median) / %.2fs (max); "
              "%d got a 408 first" % (len(times), n, times[0], percentile(times, 0.5), times[-1], got_408))
    print("  normal client meanwhile: %d requests, latency p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d errors"
          % (len(lat), percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000,
             max(lat, default=float("nan")) * 1000, len(normal.errors)))
    if len(times) < n:
        failures.append("%d trickling connections still open %ds after the head timeout"
                        % (n - len(times), 10))
    elif times[0] < args.header_timeout - 0.5 or times[-1] > args.header_timeout + args.slack:
        failures.append("tricklers closed between %.2fs and %.2fs, expected about %ds"
                        % (times[0], times[-1], args.header_timeout))
    if normal.errors:
        failures.append("normal client errors: %s" % "; ".join(normal.errors[:5]))
    if not lat or max(lat) > args.max_latency:
        failures.append("normal client max latency %.3fs above %.1fs" % (max(lat, default=0), args.max_latency))
    return failures


def stalled_reader(server, args):
    failures = []
    fd_baseline = server.fd_count()
    before = server.stats()
    rss_base = server.rss_kib()
    chunk = 64 * 1024
    count = args.stalled_mib * MIB // chunk
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET /stream?n=%d&size=%d HTTP/1.1\r\nHost: slow\r\n\r\n" % (count, chunk))
    t0 = time.monotonic()
    peak = rss_base
    dropped_after = None
    deadline = t0 + args.write_timeout + 20
    while time.monotonic() < deadline:
        peak = max(peak, server.rss_kib())
        if server.fd_count() <= fd_baseline:
            dropped_after = time.monotonic() - t0
            break
        time.sleep(0.05)
    received = 0
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            received += len(data)
    except OSError:
        pass  # reset: fine, the server gave up on us
    sock.close()
    after = server.stats()
    print("stalled reader: asked for %d MiB, never read; --write-timeout %d"
          % (args.stalled_mib, args.write_timeout))
    print("  dropped by the server after %s; client could then read %.2f MiB; "
          "server RSS %.1f MiB before, peak %.1f MiB (+%.1f MiB)"
          % ("%.2fs" % dropped_after if dropped_after is not None else "never",
             received / MIB, rss_base / 1024, peak / 1024, (peak - rss_base) / 1024))
    if dropped_after is None:
        failures.append("stalled reader not dropped within %ds" % (args.write_timeout + 20))
    elif not args.write_timeout - 0.5 <= dropped_after <= args.write_timeout + args.slack:
        failures.append("stalled reader dropped after %.2fs, expected about %ds"
                        % (dropped_after, args.write_timeout))
    if received >= args.stalled_mib * MIB:
        failures.append("the whole response arrived: the client was not stalled")
    if (peak - rss_base) / 1024 > args.max_rss_growth:
        failures.append("server RSS grew %.1f MiB while a client stalled (limit %d MiB)"
                        % ((peak - rss_base) / 1024, args.max_rss_growth))
    unclosed = (after["streams_opened"] - after["streams_closed"]) - (
        before["streams_opened"] - before["streams_closed"])
    if after["streams_opened"] == before["streams_opened"] or unclosed:
        failures.append("the dropped response's close() was not called (streams %s -> %s)"
                        % (before, after))
    return failures


def vanishing(server, args):
    failures = []
    fd_baseline = server.fd_count()
    before = server.stats()
    n = args.vanishing
    for i in range(n):
        abrupt = i % 2 == 0
        # Mid-body: a sized or a chunked body cut short.
        with connect(server.port) as sock:
            if abrupt:
                set_reset_on_close(sock)
            if i % 4 < 2:
                sock.sendall(b"POST /echo HTTP/1.1\r\nHost: slow\r\nContent-Length: 1000000\r\n\r\n"
                             + b"b" * 100000)
            else:
                sock.sendall(b"POST /chunked-echo HTTP/1.1\r\nHost: slow\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n10000\r\n" + b"c" * 20000)
        # Mid-response: part of a 100 MiB stream read (or none), then gone.
        with connect(server.port) as sock:
            if abrupt:
                set_reset_on_close(sock)
            sock.sendall(b"GET /stream?n=1600&size=65536 HTTP/1.1\r\nHost: slow\r\n\r\n")
            want = 0 if i % 4 in (1, 2) else 16384
            got = 0
            while got < want:
                data = sock.recv(65536)
                if not data:
                    break
                got += len(data)
    fds = server.wait_fds(fd_baseline, 10)
    with connect(server.port) as sock:
        sock.sendall(HELLO)
        status, _, _ = HttpReader(sock).response()
    after = server.stats()
    opened = after["streams_opened"] - before["streams_opened"]
    closed = after["streams_closed"] - before["streams_closed"]
    print("vanishing clients: %d mid-body and %d mid-response (half FIN, half RST)" % (n, n))
    print("  server fds: baseline %d, after %d; streams opened %d, closed %d; next request %d"
          % (fd_baseline, fds, opened, closed, status))
    if fds > fd_baseline:
        failures.append("fd leak: %d fds after vanishing clients, baseline %d" % (fds, fd_baseline))
    if opened != closed:
        failures.append("close() missing on %d of %d abandoned streams" % (opened - closed, opened))
    if status != 200:
        failures.append("request after vanishing clients answered %d" % status)
    return failures


def vanish_while_busy(server, args):
    """A client's last bytes and its FIN arrive while the loop is inside the app (a
    request to /sleep), so the server sees them in one readiness event. It must still
    notice the FIN: close at once mid-body, or after answering a complete request."""
    failures = []
    cases = [
        ("partial body + FIN", b"POST /echo HTTP/1.1\r\nHost: slow\r\nContent-Length: 1000\r\n\r\n" + b"b" * 100),
        ("whole request + FIN", HELLO),
    ]
    for name, payload in cases:
        with connect(server.port) as client, connect(server.port) as sleeper:
            client.sendall(HELLO)
            HttpReader(client).response()  # accepted, served, idle
            sleeper.sendall(b"GET /sleep?ms=300 HTTP/1.1\r\nHost: slow\r\n\r\n")
            reader = HttpReader(sleeper)
            time.sleep(0.1)  # pacing: let the loop enter the app before the client acts
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            reader.response()
            t0 = time.monotonic()
            client.settimeout(3)
            answer = b""
            try:
                while True:
                    data = client.recv(65536)
                    if not data:
                        break
                    answer += data
                closed_after = "%.2fs" % (time.monotonic() - t0)
            except socket.timeout:
                closed_after = None
            except OSError:
                closed_after = "%.2fs (reset)" % (time.monotonic() - t0)
        status = answer.split(b"\r\n", 1)[0].decode("latin-1") or "nothing"
        print("  client half-closed during a busy loop (%s): got %s, closed by the server after %s"
              % (name, status, closed_after or "more than 3s"))
        if closed_after is None:
            failures.append("%s while the loop was busy: the server did not notice the FIN "
                            "(connection held until a timeout)" % name)
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tricklers", type=int, default=1000)
    parser.add_argument("--header-timeout", type=int, default=5)
    parser.add_argument("--write-timeout", type=int, default=5)
    parser.add_argument("--stalled-mib", type=int, default=100)
    parser.add_argument("--vanishing", type=int, default=200, help="clients of each kind (200)")
    parser.add_argument("--slack", type=float, default=3.0,
                        help="seconds a timeout may overrun on a busy machine (3)")
    parser.add_argument("--max-latency", type=float, default=1.0,
                        help="normal client's worst latency allowed during the trickle (1 s)")
    parser.add_argument("--max-rss-growth", type=int, default=32,
                        help="MiB the server may grow while a client stalls (32)")
    parser.add_argument("--binary")
    args = parser.parse_args()
    raise_fd_limit()
    extra = ["--header-timeout", str(args.header_timeout), "--write-timeout", str(args.write_timeout),
             "--max-connections", str(args.tricklers + 500)]
    return run_checks(find_binary(args.binary), extra, [trickle, stalled_reader, vanishing, vanish_while_busy], args)


if __name__ == "__main__":
    sys.exit(main())
