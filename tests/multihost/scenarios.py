"""The multi-host scenarios, each run under bounded load on a healthy `Cluster`: a host killed
and restarted, a host's link down and back, a rolling deploy across hosts, a host drained.
Each returns its figures (a row: failed requests, p99 before and during the event, time until
traffic is balanced again, ...) and its load's records; test_multihost.py asserts on them,
measure.py prints them. Every row is also kept in RESULTS for the run's summary.
"""

import re
import subprocess
import time

from cluster import evserve_bin
from loadrun import (
    LoadRun,
    between,
    failed,
    latencies,
    percentile,
    post_check,
    slow_until,
    table,
    time_until_balanced,
)

# How long after the event a request's latency counts as "during the event".
EVENT_WINDOW = 3.0
RESULTS = []


def config_seconds(text, pattern, default):
    m = re.search(pattern, text)
    if not m:
        return default
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value


def fail_timeout(c):
    return config_seconds(c.nginx_config_text(), r"fail_timeout=(\d+)(ms|s)?", 10.0)


def connect_timeout(c):
    return config_seconds(c.nginx_config_text(), r"proxy_connect_timeout (\d+)(ms|s)?;", 60.0)


def names(backends):
    return [b.name for b in backends]


class Outcome:
    """What a scenario measured: `row` (the figures), `posts` (post_check), `load`."""

    def __init__(self, scenario, load, event, end, hosts, c, returned=None):
        self.load = load
        records = load.records
        during = between(records, event, event + EVENT_WINDOW)
        before = between(records, 0, event)
        self.posts = post_check(records, c, load.run_id)
        self.row = {
            "scenario": scenario,
            "requests": len(records),
            "failed GET": len(failed(records, "GET")),
            "failed POST": self.posts["failed"],
            "POST dup": len(self.posts["duplicated"]),
            "GET resent": sum(1 for r in records if r.get("retried")),
            "p99 before ms": round(1000 * percentile(latencies(before), 0.99), 1),
            "p99 event ms": round(1000 * percentile(latencies(during), 0.99), 1),
            "max event s": round(max(latencies(during), default=0.0), 2),
            "slow until s": slow_until(records, event, end),
            "balanced after s": time_until_balanced(records, event, end, hosts),
        }
        if returned is not None:
            end_of_load = load.started + load.duration
            self.row["back after s"] = time_until_balanced(records, returned, end_of_load, names(c.backends))

    @property
    def records(self):
        return self.load.records

    def report(self):
        RESULTS.append(self.row)
        table([self.row])
        return self


def host_killed(c, victim, restart_after=3.0):
    """SIGKILL to every process of `victim` 2 s into the load; its launcher started again
    `restart_after` seconds later."""
    others = [b for b in c.backends if b is not victim]
    with LoadRun(c, "kill", duration=10.0 + restart_after) as load:
        kill = load.at(2.0, "kill")
        killed = victim.kill_all()
        back = load.at(2.0 + restart_after, "restart")
        victim.start()
        c.wait_answering(victim.addrs)
        ready = load.mark("ready")
    out = Outcome("host killed (SIGKILL)", load, kill, back, names(others), c, returned=ready).report()
    out.killed = killed
    return out


def link_down(c, victim, down_for=5.0):
    """`victim`'s port on the bridge down 2 s into the load, up again `down_for` s later."""
    others = [b for b in c.backends if b is not victim]
    with LoadRun(c, "link", duration=12.0 + down_for) as load:
        down = load.at(2.0, "down")
        victim.set_link(False)
        up = load.at(2.0 + down_for, "up")
        victim.set_link(True)
    return Outcome(f"host link down {down_for:g} s", load, down, up, names(others), c, returned=up).report()


def rolling_deploy(c, version):
    """Each host in turn: its app's version.py rewritten, SIGHUP to its launcher, then wait
    until both its instances serve `version`. The load ends 1.5 s after the last host."""
    for b in c.backends:
        b.set_version("v1")  # every host starts from the same code
    with LoadRun(c, "deploy", duration=60) as load:
        start = load.at(1.0, "deploy")
        for b in c.backends:
            b.set_version(version)
            b.proc.send_signal(1)  # SIGHUP: rolling reload of this host's instances
            wait_serving(c, b, version, timeout=20)
        done = load.mark("deployed")
        load.at(done - load.started + 1.5)
        load.stop()
    out = Outcome("rolling deploy (SIGHUP each host)", load, start, done, names(c.backends), c)
    out.row["deploy s"] = round(done - start, 2)
    out.done = done
    return out.report()


def wait_serving(c, backend, version, timeout):
    deadline = time.monotonic() + timeout
    while True:
        versions = {c.get(a)["headers"]["X-Version"] for a in backend.addrs}
        if versions == {version}:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{backend.name} still serves {versions} {timeout}s after SIGHUP\n"
                                 f"{backend.log_text()[-2000:]}")
        time.sleep(0.1)


def has_drain():
    out = subprocess.run([evserve_bin(), "nginx-config", "--help"], capture_output=True, text=True, timeout=20)
    return "--drain" in out.stdout


def drained(c, victim):
    """nginx's configuration regenerated with `--drain <victim>` and reloaded 2 s into the
    load; `switched` is when nginx's old workers were gone."""
    others = [b for b in c.backends if b is not victim]
    old_workers = set(c.nginx_workers())
    with LoadRun(c, "drain", duration=8) as load:
        reload = load.at(2.0, "reload")
        c.reload_nginx("--drain", victim.addr)
        deadline = time.monotonic() + 15
        while set(c.nginx_workers()) & old_workers:
            assert time.monotonic() < deadline, "nginx's old workers still run 15 s after the reload"
            time.sleep(0.05)
        switched = load.mark("old workers gone")
    out = Outcome("host drained (nginx -s reload)", load, reload, load.started + load.duration, names(others), c)
    out.row["old workers gone s"] = round(switched - reload, 2)
    out.switched = switched
    return out.report()
