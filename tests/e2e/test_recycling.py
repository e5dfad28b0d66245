"""Recycling under load: --max-requests (with jitter), --max-rss and --max-lifetime replace
an instance with a ready one before it drains, one at a time, and no request fails, with
--workers (one shared socket) and with --port-range behind the launcher's nginx.

Real launcher, real instances, real nginx, real clients on 127.0.0.1; the load is bounded.
"""
import re
import subprocess

from conftest import APPS
from elastic_load import Load, assert_one_recycle_at_a_time, log_lines, status_instances
from test_launcher import (  # noqa: F401  (launcher_start is a fixture)
    EVSERVE,
    launcher_free_ports,
    launcher_nginx_args,
    launcher_start,
    launcher_wait,
    needs_nginx,
)

APP = APPS / "elastic_app.py:app"
RECYCLED = r"recycling instance (\d+) \(pid (\d+)\): "


def recycle_lines(launcher, reason=""):
    return log_lines(launcher, RECYCLED + reason)


def run_until_recycled(launcher, port, count, reason, threads=8):
    """Load on `port` until `count` recycles for `reason` completed; returns the load."""
    load = Load(port, threads=threads, max_seconds=120)
    try:
        load.wait_for_requests(100, timeout=30)
        launcher_wait(
            lambda: len(log_lines(launcher, r"recycle: instance \d+ now pid")) >= count
            and len(recycle_lines(launcher, reason)) >= count,
            90,
            f"{count} recycles ({reason})",
        )
        # Requests keep succeeding on the replacements.
        seen = load.ok
        load.wait_for_requests(seen + 100, timeout=30)
    finally:
        ok, failures = load.finish()
    print(f"{ok} requests, {len(failures)} failed, {len(recycle_lines(launcher))} recycles")
    assert failures == [], failures[:5]
    return load


def test_max_requests_recycles_workers_under_load_with_zero_failures(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "2", "--port", port, "--max-requests", "200",
                       "--max-requests-jitter", "50", APP)
    p.wait_ready()
    run_until_recycled(p, port, 4, r"served \d+ requests")
    for line in recycle_lines(p):
        served = int(re.search(r"served (\d+) requests", line).group(1))
        assert served >= 200, line
    assert_one_recycle_at_a_time(p)
    assert "recycled " in p.status()


@needs_nginx
def test_max_requests_recycles_behind_nginx_under_load_with_zero_failures(launcher_start, tmp_path):
    ports = launcher_free_ports(3)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(*launcher_nginx_args(tmp_path, backends, listen), "--max-requests", "300",
                       "--max-requests-jitter", "30", APP)
    p.wait_ready()
    run_until_recycled(p, listen, 4, r"served \d+ requests")
    assert_one_recycle_at_a_time(p)
    # Each replacement took its slot's port: nginx's configuration never changed.
    assert not log_lines(p, r"nginx upstream now")


def test_an_instance_past_max_rss_is_replaced_with_zero_failures(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "2", "--port", port, "--max-rss", "80", APP)
    p.wait_ready()
    load = Load(port, threads=4, max_seconds=90)
    try:
        load.wait_for_requests(50)
        grown = Load(port, path="/grow?mb=100", threads=1, keep_alive=False, max_seconds=10)
        launcher_wait(lambda: grown.ok >= 1, 20, "a request that grows an instance")
        grown.finish()
        leaker = grown.answers[0][1]
        line = p.wait_for(rf"recycling instance \d+ \(pid {leaker}\): uses [\d.]+ MiB of memory \(--max-rss 80 MiB\)", 30)
        p.wait_for(rf"old pid {leaker} draining", 30)
        launcher_wait(lambda: leaker not in {pid for rows in status_instances(p).values() for pid, _ in rows},
                      30, "the grown instance to be gone")
        seen = load.ok
        load.wait_for_requests(seen + 50)
    finally:
        ok, failures = load.finish()
    print(f"--max-rss: {ok} requests, {len(failures)} failed; {line[1]}")
    assert failures == [], failures[:5]


def test_max_lifetime_recycles_each_instance_in_turn(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "2", "--port", port, "--max-lifetime", "3",
                       "--max-lifetime-jitter", "2", APP)
    p.wait_ready()
    load = run_until_recycled(p, port, 3, r"has run \d+s", threads=4)
    for line in recycle_lines(p):
        age = int(re.search(r"has run (\d+)s", line).group(1))
        assert 3 <= age <= 30, line
    assert_one_recycle_at_a_time(p)
    assert load.ok > 0


def test_recycling_flags_are_checked(tmp_path):
    for flags, words in [
        (["--max-requests", "lots"], "--max-requests"),
        (["--max-rss", "99999999999999999"], "--max-rss"),
        (["--max-lifetime", "1h"], "--max-lifetime"),
    ]:
        out = subprocess.run([str(EVSERVE), "--workers", "2", *flags, str(APP)],
                             capture_output=True, text=True, timeout=20, cwd=tmp_path)
        assert out.returncode == 2 and words in out.stderr, out.stderr


def test_a_recycle_is_counted_as_a_recycle_in_the_metrics(launcher_start):
    """Bug pinned: every replacement made by the reload plan was counted with
    reason="reload", so evserve_restarts_total{reason="recycle"} stayed 0 however often
    instances were recycled."""
    from metrics_helpers import scrape, total

    port, metrics_port = launcher_free_ports(2)
    p = launcher_start("--workers", "2", "--port", port, "--max-requests", "150",
                       "--metrics", f"127.0.0.1:{metrics_port}", APP)
    p.wait_ready()
    run_until_recycled(p, port, 2, r"served \d+ requests")
    samples = scrape(int(metrics_port))
    assert total(samples, "evserve_restarts_total", reason="recycle") >= 2, samples
    assert total(samples, "evserve_restarts_total", reason="reload") == 0, samples
