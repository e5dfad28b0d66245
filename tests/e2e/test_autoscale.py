"""Autoscaling under load: `--workers MIN:MAX` and `--port-range` with `--min-instances` grow
when every instance has been busy for --scale-up-after, shrink one instance at a time after
--scale-down-after with a spare one idle, stay within MIN:MAX, and fail no request; behind
nginx the upstream follows the live instances. `evserve scale` changes the count by hand.

Real launcher, real instances, real nginx, real clients on 127.0.0.1; the load is bounded.
"""
import subprocess

from conftest import APPS, is_listening
from elastic_load import Load, log_lines, ready_count
from test_launcher import (  # noqa: F401  (launcher_start is a fixture)
    EVSERVE,
    launcher_free_ports,
    launcher_nginx_args,
    launcher_start,
    launcher_wait,
    needs_nginx,
)

APP = APPS / "elastic_app.py:app"
# 20 ms of CPU per request: a few client threads keep one instance busy all the time.
WORK = "/work?ms=20"


def scale(launcher, *args):
    return subprocess.run([str(EVSERVE), "scale", *args], cwd=launcher.cwd, capture_output=True,
                          text=True, timeout=20)


def test_workers_min_max_grows_under_load_and_shrinks_when_idle(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "1:2", "--port", port, "--scale-down-after", "2", APP)
    p.wait_ready()
    assert ready_count(p) == 1
    load = Load(port, path=WORK, threads=6, keep_alive=False, max_seconds=90)
    try:
        p.wait_for(r"scaling up: every instance has been busy for [\d.]+s \(--scale-up-after 1s\): "
                   r"adding instance 1 \(2 instances\)", 30)
        launcher_wait(lambda: ready_count(p) == 2, 30, "2 ready instances")
        assert "scaling 1:2, 2 now" in p.status()
        grown_at = __import__("time").monotonic()
        launcher_wait(lambda: len(load.pids_since(grown_at)) == 2, 30, "both instances answering")
    finally:
        ok, failures = load.finish()
    assert failures == [], failures[:5]
    # Never above MAX: the busy pair stays a pair.
    assert not log_lines(p, r"adding instance 2")
    p.wait_for(r"scaling down: .*\(--scale-down-after 2s\): removing instance 1 \(1 instance\)", 30)
    launcher_wait(lambda: ready_count(p) == 1, 30, "1 ready instance")
    assert "scaling 1:2, 1 now" in p.status()
    # Never below MIN.
    assert not log_lines(p, r"removing instance 0")
    print(f"--workers 1:2: {ok} requests, none failed")


@needs_nginx
def test_port_range_scales_behind_nginx_with_zero_failures(launcher_start, tmp_path):
    ports = launcher_free_ports(4)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(*launcher_nginx_args(tmp_path, backends, listen), "--min-instances", "1",
                       "--scale-down-after", "2", APP)
    p.wait_ready()
    conf = tmp_path / "nginx" / "nginx.conf"
    assert f":{backends[1]}" not in conf.read_text()
    launcher_wait(lambda: not is_listening(backends[1]), 10, "the unused ports to be closed")
    # Keep-alive clients through nginx: it spreads their requests over the upstream.
    load = Load(listen, path=WORK, threads=8, keep_alive=True, max_seconds=120)
    try:
        p.wait_for(rf"nginx upstream now ports {backends[0]},{backends[1]}; nginx \(pid \d+\) reloaded", 40)
        grown_at = __import__("time").monotonic()
        launcher_wait(lambda: len(load.pids_since(grown_at)) >= 2, 30, "the new instance to get requests")
        assert f":{backends[1]}" in conf.read_text()
    finally:
        ok, failures = load.finish()
    assert failures == [], failures[:5]
    p.wait_for(rf"nginx upstream now ports {backends[0]}; nginx \(pid \d+\) reloaded", 40)
    p.wait_for(r"instance [12] \(pid \d+\) is out of nginx's upstream; draining it", 40)
    launcher_wait(lambda: ready_count(p) == 1, 30, "1 ready instance")
    # Requests after the shrink still succeed.
    after = Load(listen, threads=2, max_seconds=30)
    after.wait_for_requests(50)
    ok_after, failures_after = after.finish()
    assert failures_after == [], failures_after[:5]
    print(f"--port-range scaling: {ok + ok_after} requests, none failed")


def test_scale_command_changes_the_count_within_bounds(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "1:3", "--port", port, "--scale-down-after", "600", APP)
    p.wait_ready()
    out = scale(p, "+1")
    assert out.returncode == 0 and "scaled from 1 to 2 instances" in out.stdout, out
    launcher_wait(lambda: ready_count(p) == 2, 30, "2 ready instances")
    out = scale(p, "5")
    assert out.returncode == 1 and "cannot run 5 instances: allowed 1 to 3" in out.stderr, out
    out = scale(p, "-1")
    assert out.returncode == 0 and "scaled from 2 to 1 instances" in out.stdout, out
    launcher_wait(lambda: ready_count(p) == 1, 30, "1 ready instance")
    out = scale(p, "-1")
    assert out.returncode == 1 and "allowed 1 to 3" in out.stderr, out
    out = scale(p, "many")
    assert out.returncode == 1 and "is not a count" in out.stderr, out
    assert log_lines(p, r"evserve scale \+1: adding instance 1 \(2 instances\)")
    assert log_lines(p, r"evserve scale -1: removing instance 1 \(1 instance\)")


def test_scale_command_sets_a_fixed_count(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "2", "--port", port, APP)
    p.wait_ready()
    out = scale(p, "3")
    assert out.returncode == 0 and "scaled from 2 to 3 instances" in out.stdout, out
    launcher_wait(lambda: ready_count(p) == 3, 30, "3 ready instances")
    out = scale(p, "0")
    assert out.returncode == 1 and "allowed 1 to" in out.stderr, out


def test_scale_command_without_a_launcher_says_so(tmp_path):
    out = subprocess.run([str(EVSERVE), "scale", "+1", "--control-socket", str(tmp_path / "none.sock")],
                         capture_output=True, text=True, timeout=20, cwd=tmp_path)
    assert out.returncode == 1 and "no launcher answers" in out.stderr, out
    out = subprocess.run([str(EVSERVE), "scale", "2"], capture_output=True, text=True, timeout=20,
                         cwd=tmp_path)
    assert out.returncode == 1 and "no launcher" in out.stderr, out


def test_scaling_flags_are_checked(tmp_path):
    for flags, words in [
        (["--workers", "3:2"], "--workers 3:2: MIN is above MAX"),
        (["--workers", "0:2"], "--workers must be at least 1"),
        (["--workers", "two"], "--workers: 'two' is not a count"),
        (["--workers", "1:999"], "at most 256"),
        (["--port-range", "9001-9002", "--min-instances", "3"], "--min-instances 3 is more than the 2 ports"),
        (["--workers", "1:2", "--scale-up-after", "0"], "--scale-up-after must be"),
    ]:
        out = subprocess.run([str(EVSERVE), *flags, str(APP)], capture_output=True, text=True,
                             timeout=20, cwd=tmp_path)
        assert out.returncode == 2 and words in out.stderr, (flags, out.stderr)


def scale_down_under_load(p, port, instances):
    """`evserve scale 1` under keep-alive load on `port`, after `evserve scale <instances>`."""
    out = scale(p, str(instances))
    assert out.returncode == 0, out
    launcher_wait(lambda: ready_count(p) == instances, 30, f"{instances} ready instances")
    load = Load(port, threads=6, keep_alive=True, max_seconds=90)
    try:
        load.wait_for_requests(300, timeout=30)
        out = scale(p, "1")
        assert out.returncode == 0 and f"scaled from {instances} to 1 instances" in out.stdout, out
        launcher_wait(lambda: len(log_lines(p, r"instance [1-9] \(pid \d+\) stopped")) >= instances - 1,
                      40, "the removed instances to stop")
        seen = load.ok
        load.wait_for_requests(seen + 300, timeout=30)
    finally:
        ok, failures = load.finish()
    assert failures == [], failures[:5]
    assert ready_count(p) == 1
    print(f"{load.retried} GETs sent again after a keep-alive connection closed while idle")
    return ok


def test_scaling_down_workers_under_load_fails_no_request(launcher_start):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "1:3", "--port", port, "--scale-down-after", "600", APP)
    p.wait_ready()
    ok = scale_down_under_load(p, port, 3)
    print(f"--workers scale 3 -> 1 under load: {ok} requests, none failed")


@needs_nginx
def test_scaling_down_behind_nginx_under_load_fails_no_request(launcher_start, tmp_path):
    ports = launcher_free_ports(4)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(*launcher_nginx_args(tmp_path, backends, listen), "--min-instances", "1",
                       "--scale-down-after", "600", APP)
    p.wait_ready()
    ok = scale_down_under_load(p, listen, 3)
    assert log_lines(p, rf"nginx upstream now ports {backends[0]},{backends[1]},{backends[2]}; ")
    assert log_lines(p, rf"nginx upstream now ports {backends[0]}; nginx \(pid \d+\) reloaded")
    assert len(log_lines(p, r"is out of nginx's upstream; draining it")) == 2
    # The removed instances' ports refuse connections instead of queueing them.
    launcher_wait(lambda: not is_listening(backends[1]) and not is_listening(backends[2]), 30,
                  "the removed ports to be closed")
    assert is_listening(backends[0])
    print(f"--port-range scale 3 -> 1 under load behind nginx: {ok} requests, none failed")
