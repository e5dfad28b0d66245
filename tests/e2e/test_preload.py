"""End-to-end tests of `--preload`: the app imported once, the instances forked from it.

Real launcher, real preloader and instances, real sockets on 127.0.0.1; every wait has a
deadline and every loop a bound.
"""

import os
import re
import signal
import subprocess
import time

import pytest
from test_launcher import (  # noqa: F401 (launcher_start is a fixture)
    APPS,
    LauncherLoad,
    bodies_after_reload,
    launcher_alive,
    launcher_descendants,
    launcher_free_ports,
    launcher_get,
    launcher_start,
    launcher_wait,
)

PRELOAD_APP = """\
import atexit
import os

VERSION = "v1"
IMPORTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imports.log")
EXITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exits.log")
with open(IMPORTS, "a") as f:
    f.write(f"{os.getpid()}\\n")
BIG = [str(i) * 8 for i in range(200_000)]  # memory the instances share


@atexit.register
def _exit():
    with open(EXITS, "a") as f:
        f.write(f"{os.getpid()}\\n")


def app(environ, start_response):
    body = f"pid={os.getpid()} version={VERSION} big={len(BIG)}\\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def write_app(tmp_path, version="v1"):
    app_file = tmp_path / "preload_app.py"
    app_file.write_text(PRELOAD_APP.replace('VERSION = "v1"', f'VERSION = "{version}"'))
    return app_file


def start_preloaded(launcher_start, tmp_path, env=None):
    """A ready `--workers 2 --preload` launcher of the test app; its ports and app file."""
    app_file = write_app(tmp_path)
    ports = launcher_free_ports(1)
    p = launcher_start("--workers", "2", "--port", ports[0], "--preload", f"{app_file}:app", env=env)
    p.wait_ready()
    return p, ports, app_file


def lines(path):
    return path.read_text().split() if path.exists() else []


def test_preload_imports_the_app_once_and_forks_the_instances(launcher_start, tmp_path):
    p, ports, app_file = start_preloaded(launcher_start, tmp_path, env={"PYTHONUNBUFFERED": ""})
    importers = lines(tmp_path / "imports.log")
    assert len(importers) == 1, f"imported {len(importers)} times: {p.output()}"
    instances = p.instance_pids()
    assert len(instances) == 2, p.status()
    assert str(importers[0]) not in {str(pid) for pid in instances.values()}
    # The instances are the launcher's children (adopted), so it supervises them as usual.
    for pid in instances.values():
        with open(f"/proc/{pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == p.proc.pid
    seen = set()
    for _ in range(200):
        status, body = launcher_get(ports[0])
        assert status == 200 and "version=v1" in body, body
        seen.add(re.search(r"pid=(\d+)", body)[1])
        if len(seen) == 2:
            break
    assert seen <= {str(pid) for pid in instances.values()}
    assert p.stop() == 0, p.output()
    # Each forked instance ran the app's atexit handlers on its graceful stop.
    exits = set(lines(tmp_path / "exits.log"))
    assert {str(pid) for pid in instances.values()} <= exits, p.output()


def test_preload_respawns_a_killed_instance_from_the_preloader(launcher_start, tmp_path):
    app_file = write_app(tmp_path)
    ports = launcher_free_ports(2)
    p = launcher_start("--port-range", f"{ports[0]}-{ports[1]}", "--preload", f"{app_file}:app")
    p.wait_ready()
    before = p.instance_pids()
    os.kill(before[0], signal.SIGKILL)
    launcher_wait(lambda: p.instance_pids().get(0) not in (None, before[0]), 15,
                  "instance 0 to be replaced")  # fmt: skip
    assert launcher_get(ports[0])[0] == 200
    assert len(lines(tmp_path / "imports.log")) == 1, "the respawn imported the app again"
    assert p.stop() == 0


def test_preload_reload_under_load_serves_new_code_and_fails_no_request(launcher_start, tmp_path):
    p, ports, app_file = start_preloaded(launcher_start, tmp_path)
    load = LauncherLoad(ports[0], threads=6, max_seconds=60)
    load.wait_for_requests(200)
    write_app(tmp_path, "v2")
    hup_at = time.monotonic()
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(r"reload: done", 30, after=hup_at)
    done_at = time.monotonic()
    late = bodies_after_reload(load, done_at)
    assert late and all("version=v2" in b for b in late), late[:5]
    # One import at start, one for the reload: the instances were forked, not started anew.
    assert len(lines(tmp_path / "imports.log")) == 2, p.output()
    assert p.stop() == 0


def test_preload_reload_with_broken_code_keeps_serving(launcher_start, tmp_path):
    p, ports, app_file = start_preloaded(launcher_start, tmp_path)
    before = p.instance_pids()
    app_file.write_text("def broken(:\n")
    hup_at = time.monotonic()
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(r"reload not done: the app failed to import", 30, after=hup_at)
    assert "SyntaxError" in p.output()
    assert p.instance_pids() == before
    assert "version=v1" in launcher_get(ports[0])[1]
    write_app(tmp_path, "v3")
    fixed_at = time.monotonic()
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(r"reload: done", 30, after=fixed_at)
    launcher_wait(lambda: "version=v3" in launcher_get(ports[0])[1], 10, "the fixed code")
    assert p.stop() == 0


def test_preload_import_error_at_start_exits_2_once(launcher_start, tmp_path):
    ports = launcher_free_ports(1)
    p = launcher_start("--workers", "3", "--port", ports[0], "--preload",
                       APPS / "launcher_import_error.py:app")  # fmt: skip
    try:
        code = p.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"launcher kept running on an import error:\n{p.output()}")
    p.reader.join(2)
    out = p.output()
    assert code == 2, out
    assert out.count("Traceback") == 1, out
    assert "instance 0 starting" not in out, out


def test_preload_needs_the_launcher(tmp_path):
    from test_launcher import EVSERVE

    out = subprocess.run([str(EVSERVE), "--preload", "hello:application"], cwd=APPS,
                         capture_output=True, text=True, timeout=20)  # fmt: skip
    assert out.returncode == 2
    assert "--preload need --port-range or --workers" in out.stderr, out.stderr


def test_preload_stop_leaves_no_process_behind(launcher_start, tmp_path):
    p, ports, app_file = start_preloaded(launcher_start, tmp_path)
    family = launcher_descendants(p.proc.pid)
    assert len(family) == 3, family  # the preloader and two instances
    assert p.stop() == 0
    launcher_wait(lambda: not any(launcher_alive(pid) for pid in family), 10, "every process to exit")


def test_a_preloader_started_again_replaces_every_instance(launcher_start, tmp_path):
    # Bug: after the preloader died, the next crash forked its replacement from a new
    # preloader that imported the changed code, while the other instance kept the old code.
    p, ports, app_file = start_preloaded(launcher_start, tmp_path)
    write_app(tmp_path, "v2")  # changed on disk, no SIGHUP
    preloader = next(pid for pid in launcher_descendants(p.proc.pid)
                     if pid not in p.instance_pids().values())  # fmt: skip
    os.kill(preloader, signal.SIGKILL)
    killed_at = time.monotonic()
    os.kill(p.instance_pids()[0], signal.SIGKILL)
    p.wait_for(r"preloader started again", 20, after=killed_at)
    p.wait_for(r"reload: done", 30, after=killed_at)
    answers = {launcher_get(ports[0])[1].split()[1] for _ in range(40)}
    assert answers == {"version=v2"}, answers
    assert p.stop() == 0
