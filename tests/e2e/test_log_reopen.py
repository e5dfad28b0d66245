"""Log files survive rotation: after the access log is renamed, SIGUSR1 (to a single
instance, or to the launcher, which forwards it to its instances) makes new lines go to a
new file with the old name, and no line is lost across the two files, under load."""

import os
import signal
import socket
import threading

from conftest import wait_for

APP = "access_log_app:application"


def hit(port, count):
    ok = 0
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /load HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            ok += data.startswith(b"HTTP/1.1 200")
    return ok


class Load:
    """Requests sent back to back from a thread until stopped; counts the answered ones."""

    def __init__(self, port):
        self.port, self.sent, self.stopping = port, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            self.sent += hit(self.port, 1)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return self.sent


def count_lines(*paths):
    return sum(len(p.read_bytes().splitlines()) for p in paths if p.exists())


def rotate_under_load(server, log, reopened_messages):
    before = hit(server.port, 5)
    load = Load(server.port)
    wait_for(lambda: load.sent >= 20, 30, message="requests under load")
    rotated = log.with_name(log.name + ".1")
    os.rename(log, rotated)
    server.signal(signal.SIGUSR1)
    wait_for(lambda: server.stderr().count("SIGUSR1: log files reopened") >= reopened_messages,
             15, message="the instances reopening their logs")
    assert log.exists()
    wait_for(lambda: load.sent >= 60, 30, message="requests after the rotation")
    sent = before + load.stop()
    after = hit(server.port, 10)
    total = sent + after
    wait_for(lambda: count_lines(log, rotated) >= total, 15, message=f"{total} lines")
    assert count_lines(log, rotated) == total
    assert count_lines(log) >= after
    assert count_lines(rotated) >= before
    assert server.proc.poll() is None


def test_sigusr1_reopens_the_access_log_of_a_single_instance(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve(APP, "--access-log", str(log))
    rotate_under_load(server, log, 1)


def test_sigusr1_to_the_launcher_reopens_every_instances_access_log(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve(APP, "--workers", "2", "--access-log", str(log))
    wait_for(lambda: "ready: 2 instances" in server.stderr(), 20, message="two instances")
    rotate_under_load(server, log, 2)
    assert "SIGUSR1: reopened the launcher's log files; forwarding to 2 instances" in server.stderr()
