"""Bounded load through the balancer and what it showed: a `LoadRun` starts nsclient.py's
`load` in the client namespace and returns its records; the functions below turn records into
the figures each scenario reports (failures, p99 during an event, time until balanced) and
check POSTs against what the apps recorded.
"""

import collections
import itertools
import json
import signal
import subprocess
import time

from cluster import BALANCER_ADDR

BUCKET = 0.5  # seconds; traffic shares are measured per bucket of request start times
_RUNS = itertools.count(1)


class LoadRun:
    """`with LoadRun(cluster, "kill", duration=8) as load:` ... `load.records` afterwards.
    `load.at(seconds)` sleeps until that many seconds after the load started and returns
    the time (time.monotonic(), the clock the records use)."""

    def __init__(self, cluster, name, duration, rate=300, concurrency=16, post_every=5):
        self.cluster = cluster
        # Unique in the run: the POSTs' X-Request-Ids start with it.
        run_id = self.run_id = f"{name}{next(_RUNS)}"
        self.duration = duration
        self.out = cluster.workdir / f"load-{run_id}.json"
        self.argv = cluster.client_cmd(
            "load", "--target", f"{BALANCER_ADDR}:80", "--duration", str(duration), "--rate", str(rate),
            "--concurrency", str(concurrency), "--post-every", str(post_every), "--run-id", run_id,
            "--out", str(self.out))
        self.records = None
        self.events = {}

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise AssertionError(f"load client exited ({self.proc.returncode}) before starting")
        self.started = json.loads(line)["started"]
        return self

    def at(self, seconds, name=None):
        delay = self.started + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        if name:
            self.events[name] = now
        return now

    def stop(self):
        """Ends the load now (requests in flight still finish and are recorded)."""
        self.proc.send_signal(signal.SIGUSR1)

    def mark(self, name):
        self.events[name] = time.monotonic()
        return self.events[name]

    def __exit__(self, exc_type, *rest):
        if exc_type is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return False
        # Requests stuck on a dead link may take until nginx's own timeouts.
        try:
            self.proc.communicate(timeout=self.duration + 90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError("the load client did not finish in time") from None
        assert self.proc.returncode == 0, f"load client exited with {self.proc.returncode}"
        self.records = json.loads(self.out.read_text())
        assert self.records, "the load client made no request"
        return False


def ok(record):
    return record["status"] == 200


def failed(records, method=None):
    return [r for r in records if not ok(r) and (method is None or r["method"] == method)]


def latencies(records):
    return sorted(r["end"] - r["start"] for r in records)


def percentile(values, q):
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


def between(records, start, end):
    return [r for r in records if start <= r["start"] < end]


def buckets(records, start, end):
    """Successful requests started in [start, end), per BUCKET, as Counters of X-Host."""
    out = []
    t = start
    while t + BUCKET <= end + 1e-9:
        out.append((t, collections.Counter(r["X-Host"] for r in between(records, t, t + BUCKET) if ok(r))))
        t += BUCKET
    return out


def balanced(counter, hosts):
    """Every host in `hosts` got at least half its fair share of the bucket; None for a bucket
    without traffic (a stall of the whole machine is no imbalance)."""
    total = sum(counter.values())
    if total == 0:
        return None
    return all(counter.get(h, 0) >= 0.5 * total / len(hosts) for h in hosts)


def time_until_balanced(records, event, end, hosts):
    """Seconds from `event` until traffic stays balanced over `hosts` until `end` (None if
    it never does). Resolution: BUCKET."""
    first = None
    for t, counter in buckets(records, event, end):
        verdict = balanced(counter, hosts)
        if verdict is None:
            continue
        if verdict:
            first = t if first is None else first
        else:
            first = None
    return None if first is None else round(first - event, 2)


def slow_until(records, event, end, threshold=0.5):
    """Seconds from `event` until the last request started in [event, end) that took more
    than `threshold` seconds (0.0 if none did)."""
    slow = [r["start"] for r in between(records, event, end) if r["end"] - r["start"] > threshold]
    return round(max(slow) - event, 2) if slow else 0.0


def post_check(records, cluster, run_id):
    """What happened to this run's POSTs: sent, answered 200, failed, received by the apps,
    and the ids received more than once (duplicates), answered but never received, or
    failed at the client although an app received them (the app may have acted on them)."""
    posts = [r for r in records if r["method"] == "POST"]
    received = collections.Counter(i for b in cluster.backends for i in b.posts_received()
                                   if i.startswith(run_id + "-"))
    answered = {r["id"] for r in posts if ok(r)}
    unanswered = [r["id"] for r in posts if not ok(r)]
    return {
        "sent": len(posts),
        "answered": len(answered),
        "failed": len(posts) - len(answered),
        "received": sum(received.values()),
        "duplicated": sorted(i for i, n in received.items() if n > 1),
        "answered_not_received": sorted(i for i in answered if received[i] != 1),
        "failed_but_received": sorted(i for i in unanswered if received[i]),
    }


def describe_failures(records, limit=8):
    lines = []
    for r in failed(records)[:limit]:
        lines.append(f"  {r['method']} {r['id']} status={r['status']} {r.get('error', '')} "
                     f"after {r['end'] - r['start']:.2f}s")
    return "\n".join(lines)


def table_lines(rows):
    """Rows (dicts) as aligned text lines, one column per key any row has."""
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    cells = [keys] + [[str(row.get(k, "")) for k in keys] for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    return ["  ".join(c[i].ljust(widths[i]) for i in range(len(keys))).rstrip() for c in cells]


def table(rows):
    """Prints rows as an aligned table."""
    print("\n" + "\n".join(table_lines(rows)))
