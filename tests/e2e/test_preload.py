"""The preloader (the launcher side of --preload is not wired yet): this test plays the
launcher. The preloader imports the app once and freezes the GC; each `fork SLOT` request
with a listening socket and a control socket gives an instance forked from it (reparented
to the launcher, a child subreaper), which reports ready on its control socket, serves the
preloaded app, stops on SIGTERM with exit code 0 after running the app's atexit handlers."""

import ctypes
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import APPS, Conn, evserve_bin, free_port, get, server_env

PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def recv(sock, timeout=15.0):
    sock.settimeout(timeout)
    return sock.recv(256).decode()


def test_preloader_forks_instances_that_serve_the_app_it_imported_once(tmp_path, subreaper):
    port = free_port()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    python = os.path.join(os.path.dirname(evserve_bin()), "python")
    env = server_env({"EVSERVE_ROLE": "preloader", "EVSERVE_TEST_STATE": str(tmp_path)},
                     unset=["PYTHONUNBUFFERED"])
    log = open(tmp_path / "preloader.log", "w+")
    preloader = subprocess.Popen(
        [python, "-m", "evserve", "--workers", "2", "--port", str(port), "--chdir", str(APPS),
         "preload_app:application"],
        env=env, stdout=log, stderr=subprocess.STDOUT, close_fds=False,
        preexec_fn=lambda: os.dup2(theirs.fileno(), 3),
    )
    theirs.close()
    instances = []
    try:
        assert recv(ours) == "ready"
        listener = socket.create_server(("127.0.0.1", port))
        for slot in (0, 1):
            ctl_ours, ctl_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            asked = time.monotonic()
            socket.send_fds(ours, [f"fork {slot}".encode()], [listener.fileno(), ctl_theirs.fileno()])
            ctl_theirs.close()
            kind, got_slot, pid = recv(ours).split()
            assert (kind, got_slot) == ("forked", str(slot))
            pid = int(pid)
            instances.append(pid)
            assert recv(ctl_ours) == "ready"
            # Bug: an instance whose middle parent had already exited waited out the whole
            # 5 s hand-over timeout before serving.
            assert time.monotonic() - asked < 2.5, "the forked instance was slow to start"
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            assert ppid == os.getpid(), "the instance was not handed to the subreaper"
        listener.close()
        seen = set()
        for _ in range(20):
            c = Conn(port)
            c.send(get("/"))
            r = c.read_response()
            c.close()
            body = json.loads(r.body)
            assert body["imported_by"] == preloader.pid, body
            assert body["frozen"] > 0 and body["multiprocess"] is True, body
            seen.add(body["served_by"])
        assert seen <= set(instances) and seen, seen
        for pid in instances:
            os.kill(pid, signal.SIGTERM)
        for pid in instances:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert (tmp_path / f"atexit-{pid}").exists(), "atexit handlers did not run"
    finally:
        for pid in instances:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        ours.close()
        try:
            code = preloader.wait(10)
        finally:
            if preloader.poll() is None:
                preloader.kill()
    log.seek(0)
    assert code == 0, log.read()
