"""Several hosts behind one nginx, under load: a host killed, a host's link down and back, a
rolling deploy across hosts, a host drained, client addresses; POSTs never duplicated.

Each scenario (scenarios.py) runs bounded load from the client namespace through nginx
(nsclient.py: fixed rate, fixed concurrency, keep-alive, every 5th request a POST the app
holds for 20 ms after recording it), acts on one host while it runs, then prints its figures:
failed requests, p99 latency during the event, and how long until traffic was balanced again.
The tests assert on them.
"""

import time

import pytest
import scenarios
from cluster import BALANCER_ADDR, CLIENT_ADDR
from loadrun import describe_failures, failed
from scenarios import connect_timeout, fail_timeout, names

# Slack on top of nginx's own timers before a recovery counts as late (shared 2-core machine).
SLACK = 4.0


def assert_no_failed_get_and_no_duplicated_post(out):
    posts = out.posts
    assert failed(out.records, "GET") == [], describe_failures(out.records)
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
    victim = c.backends[0]
    out = scenarios.host_killed(c, victim)
    assert out.killed >= 3, f"only {out.killed} processes in {victim.ns}"
    assert_no_failed_get_and_no_duplicated_post(out)
    assert out.row["balanced after s"] is not None, "traffic never settled on the other hosts"
    back = out.row["back after s"]
    assert back is not None and back <= fail_timeout(c) + SLACK, (
        f"the restarted host did not get its share within fail_timeout + {SLACK}s: {out.row}")


def test_a_host_whose_link_goes_down_and_back_fails_no_get_and_duplicates_no_post(healthy):
    c = healthy
    out = scenarios.link_down(c, c.backends[1], down_for=5.0)
    assert_no_failed_get_and_no_duplicated_post(out)
    # Back within fail_timeout plus nginx's connect timeout (a connect to the host may have
    # started just before the link came back).
    bound = fail_timeout(c) + connect_timeout(c) + SLACK
    back = out.row["back after s"]
    assert back is not None and back <= bound, (
        f"the host did not get its share within fail_timeout + connect timeout + {SLACK}s ({bound}s): {out.row}")


def test_a_rolling_deploy_across_hosts_fails_no_request_and_every_host_serves_the_new_code(healthy):
    c = healthy
    out = scenarios.rolling_deploy(c, "v2-deployed")
    assert failed(out.records) == [], describe_failures(out.records)
    assert_no_failed_get_and_no_duplicated_post(out)
    after = [x for x in out.records if x["start"] > out.done + 0.2]
    assert after and {x["X-Version"] for x in after} == {"v2-deployed"}
    for b in c.backends:
        for addr in b.addrs:
            assert c.get(addr)["headers"]["X-Version"] == "v2-deployed", addr


def test_a_drained_host_gets_no_new_request_after_an_nginx_reload(healthy):
    if not scenarios.has_drain():
        pytest.skip("`evserve nginx-config` has no --drain option yet")
    c = healthy
    victim = c.backends[2]
    out = scenarios.drained(c, victim)
    assert_no_failed_get_and_no_duplicated_post(out)
    # nginx closes its idle client connections when it reloads: a POST the client sent on one
    # at that moment fails at the client, but it never reached an app.
    assert out.posts["failed_but_received"] == [], out.posts
    late = [x for x in out.records if x["start"] > out.switched and x.get("X-Host") == victim.name]
    assert late == [], f"{len(late)} requests reached the drained host {victim.name} after the reload"
