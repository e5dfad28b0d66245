"""The client side of the multi-host harness, run inside a network namespace with
`ip netns exec NS python nsclient.py COMMAND ...` (only a process started there can reach
the namespaces' private addresses).

Commands:
  wait --timeout T HOST:PORT...   until each address answers GET / with 200 (exit 1 on timeout)
  get HOST:PORT [PATH]            one GET (--header NAME:VALUE adds one); prints {"status", "headers"} as JSON
  load --target HOST:PORT ...     bounded load: a fixed number of keep-alive connections, a
                                  fixed request rate and duration (SIGUSR1 ends it early);
                                  writes one record per request (start, end, method,
                                  status, host, ...) as JSON

It retries only what every keep-alive HTTP client retries (a GET on a reused connection the
server closed before answering, once, on a new connection); every request's outcome is
recorded as it happened. Times are
time.monotonic(), which every process on the machine shares, so the harness can place its
events on the same clock.
"""

import argparse
import http.client
import itertools
import json
import signal
import sys
import threading
import time

ANSWER_HEADERS = ("X-Host", "X-Version", "X-Remote-Addr")
# What a reused keep-alive connection the server has just closed looks like.
STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


def get_once(addr, path="/", timeout=2.0, headers=()):
    host, port = split_addr(addr)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(h.split(":", 1) for h in headers))
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


def cmd_wait(args):
    deadline = time.monotonic() + args.timeout
    pending = list(args.addrs)
    while pending:
        addr = pending[0]
        try:
            status, _ = get_once(addr, timeout=1.0)
        except OSError:
            status = None
        if status == 200:
            pending.pop(0)
            continue
        if time.monotonic() >= deadline:
            print(f"not answering after {args.timeout}s: {' '.join(pending)}", file=sys.stderr)
            return 1
        time.sleep(0.05)
    return 0


def cmd_get(args):
    status, headers = get_once(args.addr, args.path, timeout=args.timeout, headers=args.header)
    print(json.dumps({"status": status, "headers": headers}))
    return 0


class Load:
    """`concurrency` threads, each with one keep-alive connection, together starting `rate`
    requests per second for `duration` seconds; a fraction of them are POSTs, each with a
    unique X-Request-Id."""

    def __init__(self, args):
        self.args = args
        self.host, self.port = split_addr(args.target)
        self.records = []
        self.lock = threading.Lock()
        self.counter = itertools.count()

    def run(self):
        self.started = time.monotonic()
        self.stop_at = self.started + self.args.duration
        # SIGUSR1: stop starting requests now (the harness ends a run early this way).
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "stop_at", time.monotonic()))
        print(json.dumps({"started": self.started}), flush=True)
        threads = [threading.Thread(target=self.worker, args=(i,)) for i in range(self.args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.records

    def worker(self, index):
        interval = self.args.concurrency / self.args.rate if self.args.rate > 0 else 0.0
        next_start = self.started + index * interval / self.args.concurrency
        conn = None
        out = []
        while True:
            now = time.monotonic()
            if next_start > now:
                time.sleep(next_start - now)
            if time.monotonic() >= self.stop_at:
                break
            n = next(self.counter)
            is_post = self.args.post_every > 0 and n % self.args.post_every == 0
            record, conn = self.one(conn, n, is_post)
            out.append(record)
            next_start = max(next_start + interval, time.monotonic() - interval)
        if conn is not None:
            conn.close()
        with self.lock:
            self.records.extend(out)

    def connect(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.args.timeout)
        conn.used = 0
        return conn

    def one(self, conn, n, is_post):
        """One request; returns its record and the connection to use next (None if closed).

        Like any HTTP client that keeps connections alive (RFC 9112, 9.3.1), a GET sent on a
        reused connection that the server closed before any byte of a response came back is
        sent once more on a new connection (the record keeps the first error as "retried").
        A POST is never sent twice: it fails."""
        request_id = f"{self.args.run_id}-{n}"
        record = {"start": time.monotonic(), "method": "POST" if is_post else "GET", "id": request_id, "status": -1}
        conn = conn or self.connect()
        error = self.send(conn, record, is_post)
        if error and not is_post and conn.used > 0 and isinstance(error, STALE_CONNECTION):
            record["retried"] = f"{type(error).__name__}: {error}"
            conn.close()
            conn = self.connect()
            error = self.send(conn, record, is_post)
        if error:
            record["error"] = f"{type(error).__name__}: {error}"
        record["end"] = time.monotonic()
        if error or record.pop("close"):
            conn.close()
            return record, None
        conn.used += 1
        return record, conn

    def send(self, conn, record, is_post):
        request_id = record["id"]
        try:
            if is_post:
                headers = {"X-Request-Id": request_id, "Content-Type": "application/x-www-form-urlencoded"}
                body = b"item=" + request_id.encode()
                conn.request("POST", f"/post?hold={self.args.post_hold}", body=body, headers=headers)
            else:
                conn.request("GET", "/", headers={"X-Request-Id": request_id})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            return exc
        record["status"] = resp.status
        record["close"] = resp.will_close
        for name in ANSWER_HEADERS:
            record[name] = resp.getheader(name)
        return None


def cmd_load(args):
    records = Load(args).run()
    with open(args.out, "w") as f:
        json.dump(records, f)
    print(json.dumps({"done": time.monotonic(), "requests": len(records)}), flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--timeout", type=float, default=20.0)
    w.add_argument("addrs", nargs="+")
    g = sub.add_parser("get")
    g.add_argument("--timeout", type=float, default=5.0)
    g.add_argument("--header", action="append", default=[], help="NAME:VALUE (repeatable)")
    g.add_argument("addr")
    g.add_argument("path", nargs="?", default="/")
    lo = sub.add_parser("load")
    lo.add_argument("--target", required=True)
    lo.add_argument("--duration", type=float, required=True)
    lo.add_argument("--concurrency", type=int, default=16)
    lo.add_argument("--rate", type=float, default=300.0,
                    help="requests per second, all threads together (0: as fast as possible)")
    lo.add_argument("--post-every", type=int, default=5, help="every Nth request is a POST (0: none)")
    lo.add_argument("--post-hold", type=float, default=0.02, help="seconds the app holds each POST after recording it")
    lo.add_argument("--timeout", type=float, default=75.0, help="socket timeout per request (above nginx's own)")
    lo.add_argument("--run-id", default="r")
    lo.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return {"wait": cmd_wait, "get": cmd_get, "load": cmd_load}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
