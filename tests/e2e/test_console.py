"""End-to-end tests of the control console: `evserve status --json`, `reload`, `restart`,
`signal` and `stop` against a real launcher (real instances, real sockets), and their
one-line errors. Every wait is on a condition with a deadline; all traffic is on 127.0.0.1.
"""
import json
import shutil
import subprocess
import threading
import time

from conftest import free_port
from test_launcher import (
    APPS,
    EVSERVE,
    LauncherLoad,
    bodies_after_reload,
    launcher_alive,
    launcher_free_ports,
    launcher_get,
    launcher_start,  # noqa: F401 (fixture)
    launcher_wait,
)


def console(*args, cwd, timeout=15):
    """Runs `evserve ARGS` to completion in `cwd`."""
    return subprocess.run(
        [str(EVSERVE), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def status_json(cwd, *args):
    out = console("status", "--json", *args, cwd=cwd)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    return json.loads(lines[0])


def ready_pids(cwd):
    """{instance: pid} of the ready instances, from `evserve status --json`."""
    return {
        row["instance"]: row["pid"]
        for row in status_json(cwd)["instances"]
        if row["state"] == "ready"
    }


def one_line_error(out):
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1, (out.returncode, out.stdout, out.stderr)
    return lines[0]


def start_app(launcher_start, tmp_path, *flags, env=None):
    """A ready launcher of a copy of console_app (so tests may rewrite it)."""
    app_file = tmp_path / "console_copy.py"
    shutil.copy(APPS / "console_app.py", app_file)
    p = launcher_start(*flags, f"{app_file}:app", env=env)
    p.wait_ready()
    return p, app_file


def test_status_json_matches_the_running_instances(launcher_start, tmp_path):
    ports = launcher_free_ports(2)
    sock = tmp_path / "control.sock"
    p, _ = start_app(
        launcher_start, tmp_path, "--port-range", f"{ports[0]}-{ports[1]}", "--control-socket", sock
    )
    status = status_json(tmp_path / "..", "--control-socket", sock)
    launcher = status["launcher"]
    assert launcher["pid"] == p.proc.pid
    assert launcher["state"] == "running" and launcher["instances_wanted"] == 2
    assert launcher["control_socket"] == str(sock)
    assert launcher["app"].endswith("console_copy.py:app")
    rows = status["instances"]
    assert [r["instance"] for r in rows] == [0, 1]
    for row, port in zip(rows, ports):
        assert row["port"] == port and row["state"] == "ready", row
        served_pid = int(launcher_get(port)[1].split()[0].removeprefix("pid="))
        assert row["pid"] == served_pid
        assert row["rss_bytes"] > 1024 * 1024 and row["restarts"] == 0
        assert isinstance(row["requests"], int) and isinstance(row["uptime_seconds"], int)
    # The text table shows the same processes.
    text = console("status", "--control-socket", sock, cwd=tmp_path).stdout
    for row in rows:
        assert str(row["pid"]) in text


def test_reload_under_load_fails_no_request_and_serves_new_code(launcher_start, tmp_path):
    port = free_port()
    p, app_file = start_app(launcher_start, tmp_path, "--workers", "2", "--port", port)
    before = set(ready_pids(tmp_path).values())
    load = LauncherLoad(port, threads=6, max_seconds=60)
    load.wait_for_requests(100)
    app_file.write_text(app_file.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    asked_at = time.monotonic()
    out = console("reload", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "reloading 2 instances" in out.stdout
    p.wait_for(r"reload: done", 30, after=asked_at)
    late = bodies_after_reload(load, time.monotonic(), 50)
    assert all("version=v2" in b for b in late), late[:3]
    assert not before & set(ready_pids(tmp_path).values())


def test_restart_replaces_one_instance_under_load(launcher_start, tmp_path):
    ports = launcher_free_ports(2)
    p, _ = start_app(launcher_start, tmp_path, "--port-range", f"{ports[0]}-{ports[1]}")
    before = ready_pids(tmp_path)
    load = LauncherLoad(ports[1], threads=4, max_seconds=60)
    load.wait_for_requests(50)
    asked_at = time.monotonic()
    out = console("restart", "1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"restarting instance 1 (pid {before[1]})" in out.stdout
    p.wait_for(r"instance 1 now pid \d+", 30, after=asked_at)
    launcher_wait(lambda: ready_pids(tmp_path).get(1) not in (None, before[1]), 10, "new pid")
    count = load.ok
    load.wait_for_requests(count + 50)
    ok, failures = load.finish()
    assert failures == [], failures[:5]
    after = ready_pids(tmp_path)
    assert after[0] == before[0], "only instance 1 is replaced"
    assert launcher_get(ports[1])[1].startswith(f"pid={after[1]} ")
    assert "no instance 7" in one_line_error(console("restart", "7", cwd=tmp_path))


def test_signals_reach_the_instance_or_the_launcher(launcher_start, tmp_path):
    ports = launcher_free_ports(2)
    p, _ = start_app(launcher_start, tmp_path, "--port-range", f"{ports[0]}-{ports[1]}")
    before = ready_pids(tmp_path)
    out = console("signal", "USR1", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"SIGUSR1 sent to instance 0 (pid {before[0]})" in out.stdout
    launcher_wait(lambda: "signals=SIGUSR1" in launcher_get(ports[0])[1], 5, "SIGUSR1 recorded")
    assert "signals=\n" in launcher_get(ports[1])[1], "the other instance got nothing"
    # By number, to the other instance.
    assert console("signal", "12", "1", cwd=tmp_path).returncode == 0
    launcher_wait(lambda: "signals=SIGUSR2" in launcher_get(ports[1])[1], 5, "SIGUSR2 recorded")
    # Without INSTANCE: the launcher itself, which reloads on HUP.
    asked_at = time.monotonic()
    out = console("signal", "hup", cwd=tmp_path)
    assert out.returncode == 0 and "rolling reload" in out.stdout, out
    p.wait_for(r"reload: done", 30, after=asked_at)
    assert not set(before.values()) & set(ready_pids(tmp_path).values())
    # KILL to an instance: it dies and is restarted.
    victim = ready_pids(tmp_path)[1]
    assert console("signal", "KILL", "1", cwd=tmp_path).returncode == 0
    launcher_wait(lambda: not launcher_alive(victim), 5, "the killed instance gone")
    launcher_wait(lambda: ready_pids(tmp_path).get(1) not in (None, victim), 15, "a new instance 1")
    # Signals the launcher does not take, unknown signals, unknown instances.
    err = one_line_error(console("signal", "USR2", cwd=tmp_path))
    assert "does not take SIGUSR2" in err
    out = console("signal", "NOPE", "0", cwd=tmp_path)
    assert out.returncode == 2 and "'NOPE' is not a signal" in one_line_error(out)
    assert "no instance 5" in one_line_error(console("signal", "TERM", "5", cwd=tmp_path))
    assert p.proc.poll() is None, "the launcher survived every refused request"


def test_stop_lets_in_flight_requests_finish_then_exits(launcher_start, tmp_path):
    port = free_port()
    mark = tmp_path / "in-flight"
    env = {"CONSOLE_TEST_MARK": str(mark)}
    p, _ = start_app(launcher_start, tmp_path, "--workers", "1", "--port", port, env=env)
    answers = []
    slow = threading.Thread(target=lambda: answers.append(launcher_get(port, "/sleep?s=1")))
    slow.start()
    launcher_wait(mark.exists, 5, "the slow request in flight")
    out = console("stop", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"stopping the launcher (pid {p.proc.pid})" in out.stdout
    code, log = p.wait_exit(15, "after evserve stop")
    slow.join(10)
    assert code == 0, log
    assert answers and answers[0][0] == 200, answers


def test_without_a_launcher_every_subcommand_fails_in_one_line(tmp_path):
    for args in (["reload"], ["stop"], ["restart", "0"], ["signal", "HUP"], ["status", "--json"]):
        err = one_line_error(console(*args, cwd=tmp_path))
        assert "no launcher started in this directory answers" in err, err
    missing = tmp_path / "none.sock"
    err = one_line_error(console("reload", "--control-socket", missing, cwd=tmp_path))
    assert f"no launcher answers on {missing}" in err


def test_two_launchers_in_one_directory_need_a_control_socket(launcher_start, tmp_path):
    first, _ = start_app(launcher_start, tmp_path, "--workers", "1", "--port", free_port())
    second = launcher_start("--workers", "1", "--port", free_port(), f"{APPS / 'console_app.py'}:app")
    second.wait_ready()
    err = one_line_error(console("reload", cwd=tmp_path))
    assert "2 launchers started in this directory answer" in err and "--control-socket" in err
    out = console("status", "--json", cwd=tmp_path)
    pids = sorted(json.loads(line)["launcher"]["pid"] for line in out.stdout.splitlines())
    assert pids == sorted([first.proc.pid, second.proc.pid])
