"""Several hosts behind one nginx, under load: a host killed, a host's link down and back, a
rolling deploy across hosts, a host drained, client addresses; POSTs never duplicated.

Each scenario runs bounded load from the client namespace through nginx (nsclient.py: fixed
rate, fixed concurrency, keep-alive, every 5th request a POST the app holds for 20 ms after
recording it), acts on one host while it runs, then prints and asserts: failed requests, p99
latency during the event, and how long until traffic was balanced again.
"""

import re
import subprocess
import time

import pytest

from cluster import BALANCER_ADDR, CLIENT_ADDR, evserve_bin
from conftest import RESULTS
from loadrun import (
    LoadRun,
    between,
    describe_failures,
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
# Slack on top of nginx's own timers before a recovery counts as late (shared 2-core machine).
SLACK = 4.0


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


def figures(scenario, load, event, end, hosts, c, returned=None):
    """The row every scenario reports for the window [event, end) (and, with `returned`, how
    long after it every host had its share again); prints it and keeps it for the summary."""
    records = load.records
    during = between(records, event, event + EVENT_WINDOW)
    before = between(records, 0, event)
    posts = post_check(records, c, load.run_id)
    row = {
        "scenario": scenario,
        "requests": len(records),
        "failed GET": len(failed(records, "GET")),
        "failed POST": posts["failed"],
        "POST dup": len(posts["duplicated"]),
        "p99 before ms": round(1000 * percentile(latencies(before), 0.99), 1),
        "p99 event ms": round(1000 * percentile(latencies(during), 0.99), 1),
        "max event s": round(max(latencies(during), default=0.0), 2),
        "slow until s": slow_until(records, event, end),
        "balanced after s": time_until_balanced(records, event, end, hosts),
    }
    if returned is not None:
        end_of_load = load.started + load.duration
        row["back after s"] = time_until_balanced(records, returned, end_of_load, names(c.backends))
    RESULTS.append(row)
    table([row])
    return row, posts


def assert_no_failed_get_and_no_duplicated_post(records, posts):
    assert failed(records, "GET") == [], describe_failures(records)
    assert posts["duplicated"] == [], f"POSTs the apps received more than once: {posts['duplicated'][:10]}"
    assert posts["answered_not_received"] == [], (
        f"POSTs answered 200 but not received exactly once: {posts['answered_not_received'][:10]}")
    assert posts["received"] <= posts["sent"]


def test_every_host_sees_the_client_namespace_address(healthy):
    """nginx sends X-Forwarded-For $remote_addr; each launcher trusts it from the balancer
    (--forwarded-allow-ips), so REMOTE_ADDR is the client's address on every host, also when
    the client sends an X-Forwarded-For of its own."""
    c = healthy
    seen = {}
    deadline = time.monotonic() + 20
    while len(seen) < len(c.backends) and time.monotonic() < deadline:
        r = c.get(f"{BALANCER_ADDR}:80", headers=["X-Forwarded-For: 192.0.2.66"])
        assert r["status"] == 200
        seen[r["headers"]["X-Host"]] = r["headers"]["X-Remote-Addr"]
    assert sorted(seen) == names(c.backends), f"nginx reached only {sorted(seen)}"
    assert set(seen.values()) == {CLIENT_ADDR}, seen


def test_a_client_that_is_not_the_balancer_cannot_set_its_address(healthy):
    """Straight to an instance, from an address not in --forwarded-allow-ips: the header is
    not trusted, REMOTE_ADDR stays the peer's address."""
    c = healthy
    for b in c.backends:
        r = c.get(b.addrs[0], headers=["X-Forwarded-For: 192.0.2.66"])
        assert r["headers"]["X-Remote-Addr"] == CLIENT_ADDR, (b.name, r)


def test_a_host_killed_with_sigkill_fails_no_get_and_duplicates_no_post(healthy):
    c = healthy
    victim, others = c.backends[0], c.backends[1:]
    with LoadRun(c, "kill", duration=9) as load:
        kill = load.at(2.0, "kill")
        killed = victim.kill_all()
        back = load.at(5.0, "restart")
        victim.start()
        c.wait_answering(victim.addrs)
        ready = load.mark("ready")
    row, posts = figures("host killed (SIGKILL)", load, kill, back, names(others), c, returned=ready)
    assert killed >= 3, f"only {killed} processes in {victim.ns}"
    assert_no_failed_get_and_no_duplicated_post(load.records, posts)
    assert row["balanced after s"] is not None, "traffic never settled on the other hosts"
    assert row["back after s"] is not None and row["back after s"] <= fail_timeout(c) + SLACK, (
        f"the restarted host did not get its share within fail_timeout + {SLACK}s: {row}")


def test_a_host_whose_link_goes_down_and_back_fails_no_get_and_duplicates_no_post(healthy):
    c = healthy
    victim, others = c.backends[1], [c.backends[0], c.backends[2]]
    down_for = 5.0
    with LoadRun(c, "link", duration=15) as load:
        down = load.at(2.0, "down")
        victim.set_link(False)
        up = load.at(2.0 + down_for, "up")
        victim.set_link(True)
    row, posts = figures("host link down 5 s", load, down, up, names(others), c, returned=up)
    assert_no_failed_get_and_no_duplicated_post(load.records, posts)
    bound = fail_timeout(c) + connect_timeout(c) + SLACK
    assert row["back after s"] is not None and row["back after s"] <= bound, (
        f"the host did not get its share within fail_timeout + connect timeout + {SLACK}s ({bound}s): {row}")


def test_a_rolling_deploy_across_hosts_fails_no_request_and_every_host_serves_the_new_code(healthy):
    c = healthy
    for b in c.backends:
        b.set_version("v1")  # a session may have deployed before: every host starts on v1
    with LoadRun(c, "deploy", duration=30) as load:
        start = load.at(1.0, "deploy")
        for b in c.backends:
            b.set_version("v2-deployed")
            b.proc.send_signal(1)  # SIGHUP: rolling reload of this host's instances
            wait_serving(c, b, "v2-deployed", timeout=20)
        done = load.mark("deployed")
        # The load ends 1.5 s after the deploy instead of running its whole duration.
        load.at(done - load.started + 1.5)
        load.stop()
    r = load.records
    row, posts = figures("rolling deploy (SIGHUP each host)", load, start, done, names(c.backends), c)
    row["deploy s"] = round(done - start, 2)
    assert failed(r) == [], describe_failures(r)
    assert_no_failed_get_and_no_duplicated_post(r, posts)
    after = [x for x in r if x["start"] > done + 0.2]
    assert after and {x["X-Version"] for x in after} == {"v2-deployed"}
    for b in c.backends:
        for addr in b.addrs:
            assert c.get(addr)["headers"]["X-Version"] == "v2-deployed", addr


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


def test_a_drained_host_gets_no_new_request_after_an_nginx_reload(healthy):
    if not has_drain():
        pytest.skip("`evserve nginx-config` has no --drain option yet")
    c = healthy
    victim = c.backends[2]
    old_workers = set(c.nginx_workers())
    with LoadRun(c, "drain", duration=8) as load:
        reload = load.at(2.0, "reload")
        c.reload_nginx("--drain", victim.addr)
        deadline = time.monotonic() + 15
        while set(c.nginx_workers()) & old_workers:
            assert time.monotonic() < deadline, "nginx's old workers still run 15 s after the reload"
            time.sleep(0.05)
        switched = load.mark("old workers gone")
    r = load.records
    others = [b for b in c.backends if b is not victim]
    row, posts = figures("host drained (nginx -s reload)", load, reload, load.started + load.duration,
                         names(others), c)
    row["old workers gone s"] = round(switched - reload, 2)
    assert failed(r) == [], describe_failures(r)
    assert_no_failed_get_and_no_duplicated_post(r, posts)
    late = [x for x in r if x["start"] > switched and x.get("X-Host") == victim.name]
    assert late == [], f"{len(late)} requests reached the drained host {victim.name} after the reload"
