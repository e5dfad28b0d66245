"""--socket-dir: one Unix socket per instance, nginx's upstream pointing at them. Real
launcher, real nginx, load over loopback; a user's file at a socket path is never touched.

The socket directory is made under /tmp and opened to every user (0755): nginx's workers run
as `nobody` when the tests run as root, and must reach the sockets.
"""

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from test_launcher import (  # noqa: F401 (launcher_start is a fixture)
    APPS,
    EVSERVE,
    LauncherLoad,
    bodies_after_reload,
    launcher_free_ports,
    launcher_get,
    launcher_start,
    needs_nginx,
)


@pytest.fixture
def socket_dir():
    path = Path(tempfile.mkdtemp(prefix="evserve-sockets-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_on_sockets(launcher_start, tmp_path, directory, workers, app=APPS / "launcher_app.py:app"):
    (listen,) = launcher_free_ports(1)
    p = launcher_start(
        "--workers", str(workers), "--socket-dir", directory,
        "--nginx-conf", tmp_path / "nginx" / "nginx.conf", "--nginx",
        "--listen", f"127.0.0.1:{listen}", app,
    )
    p.wait_ready()
    return p, listen


def is_socket(path):
    return stat.S_ISSOCK(os.lstat(path).st_mode)


@needs_nginx
def test_each_instance_listens_on_its_socket_behind_nginx(launcher_start, tmp_path, socket_dir):
    p, listen = start_on_sockets(launcher_start, tmp_path, socket_dir, 3)
    sockets = [socket_dir / f"instance-{n}.sock" for n in range(3)]
    assert all(is_socket(s) for s in sockets), os.listdir(socket_dir)
    conf = (tmp_path / "nginx" / "nginx.conf").read_text()
    for s in sockets:
        assert f"server unix:{s} " in conf, conf
    status = p.status()
    for s in sockets:
        assert f"unix:{s}" in status, status
    assert len(p.instance_pids()) == 3, status
    # Each socket is served by its own instance, and nginx spreads requests over them.
    pids = set()
    for s in sockets:
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(5)
            c.connect(str(s))
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := c.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        pids.add(reply.split(b"pid=")[1].split()[0])
    assert len(pids) == 3, pids
    for _ in range(20):
        status_code, body = launcher_get(listen)
        assert status_code == 200 and body.startswith("pid="), body
    assert p.stop() == 0
    assert not any(s.exists() for s in sockets), os.listdir(socket_dir)


@needs_nginx
def test_sighup_and_kill_9_behind_nginx_on_sockets_fail_no_request(launcher_start, tmp_path, socket_dir):
    app_file = tmp_path / "socket_reload_app.py"
    shutil.copy(APPS / "launcher_app.py", app_file)
    p, listen = start_on_sockets(launcher_start, tmp_path, socket_dir, 3, f"{app_file}:app")
    load = LauncherLoad(listen, threads=8, max_seconds=90)
    load.wait_for_requests(200)
    victim = p.instance_pids()[1]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    p.wait_for(r"instance 1 ready", 10, after=killed_at)
    load.wait_for_requests(load.ok + 200)
    app_file.write_text(app_file.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    hup_at = time.monotonic()
    p.proc.send_signal(signal.SIGHUP)
    p.wait_for(r"reload: done", 30, after=hup_at)
    done_at = time.monotonic()
    late = bodies_after_reload(load, done_at, timeout=20)
    assert late and all("version=v2" in b for b in late), late[:5]


def test_a_users_file_at_a_socket_path_is_left_alone(tmp_path, socket_dir):
    ports = launcher_free_ports(1)
    precious = socket_dir / "instance-1.sock"
    precious.write_text("mine\n")
    out = subprocess.run(
        [str(EVSERVE), "--workers", "2", "--socket-dir", str(socket_dir),
         "--listen", f"127.0.0.1:{ports[0]}", str(APPS / "launcher_app.py:app")],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    assert out.returncode != 0, out.stderr
    assert "regular file, not a socket; not replacing it" in out.stderr, out.stderr
    assert precious.read_text() == "mine\n"
    assert not (socket_dir / "instance-0.sock").exists(), "instance 0's socket left behind"


def test_a_stale_socket_is_replaced(launcher_start, socket_dir):
    stale = socket_dir / "instance-0.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    assert is_socket(stale)
    p = launcher_start("--workers", "1", "--socket-dir", socket_dir, APPS / "launcher_app.py:app")
    p.wait_ready()
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(5)
        c.connect(str(stale))
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert c.recv(100).startswith(b"HTTP/1.1 200")


def test_socket_dir_flag_errors_are_one_line(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("x")
    for flags, expected, one_line in [
        (["--socket-dir", str(tmp_path / "s")], "--socket-dir needs --workers", True),
        (["--socket-dir", str(regular), "--workers", "2"], "not a directory", True),
        # clap's own usage error for two flags that exclude each other.
        (["--socket-dir", str(tmp_path / "s"), "--port-range", "9001-9002"], "--port-range", False),
    ]:
        out = subprocess.run(
            [str(EVSERVE), *flags, str(APPS / "launcher_app.py:app")],
            capture_output=True, text=True, timeout=30, cwd=tmp_path,
        )
        assert out.returncode != 0 and expected in out.stderr, out.stderr
        assert not one_line or out.stderr.strip().count("\n") == 0, out.stderr
        assert regular.read_text() == "x"
    assert not (tmp_path / "s").exists(), "a refused command created the socket directory"


@needs_nginx
def test_a_socket_dir_nginx_workers_cannot_reach_is_warned_about(launcher_start, tmp_path):
    """Bug pinned: with --socket-dir inside a directory only root may enter (pytest's and
    mkdtemp's 0700 directories), nginx's workers, which run as nobody, got 502 for every
    request and the launcher said nothing."""
    private = Path(tempfile.mkdtemp(prefix="evserve-private-"))
    try:
        private.chmod(0o700)
        p, _listen = start_on_sockets(launcher_start, tmp_path, private / "sockets", 1)
        p.wait_for(r"--socket-dir .*cannot reach its sockets: .* is mode 0700", 10)
        assert p.stop() == 0
    finally:
        shutil.rmtree(private, ignore_errors=True)
