"""Helpers the metrics and status-page tests share: a launcher started with `--metrics`,
fetching a page of its metrics listener, and the Prometheus text parsed by the real parser.
"""

import http.client
import os
import signal
import subprocess
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from conftest import APPS, evserve_bin, free_port, server_env, wait_for

START_TIMEOUT = 30.0


def fetch(port, path="/metrics", method="GET", timeout=5.0):
    """(status, headers, body text) of one request to the metrics listener."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def scrape(port):
    """Every sample of /metrics, parsed by prometheus_client: a list of
    (name, labels, value)."""
    status, headers, text = fetch(port)
    assert status == 200, (status, text)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples, name, **labels):
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        value
        for n, have, value in samples
        if n == name and all(have.get(k) == v for k, v in labels.items())
    )


class Launcher:
    """`evserve ... --metrics 127.0.0.1:PORT metrics_app:app`, its log in a file."""

    def __init__(self, tmp_path, *flags, app="metrics_app:app"):
        self.metrics_port = free_port()
        self.log_path = Path(tmp_path) / "evserve.log"
        self._log = open(self.log_path, "wb")
        self.argv = [evserve_bin(), *flags, "--metrics", f"127.0.0.1:{self.metrics_port}", app]
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            cwd=str(APPS), env=server_env(), start_new_session=True,
        )

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, instances):
        """Until /metrics says `instances` instances are ready."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"evserve exited {self.proc.returncode}:\n{self.log()}")
            try:
                return total(scrape(self.metrics_port), "evserve_instances", state="ready") == instances
            except OSError:
                return False
        wait_for(ready, START_TIMEOUT, interval=0.1, message=f"{instances} ready instances\n{self.log()}")
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def get(port, path="/", timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Load:
    """Keeps GETting `path` on `port` from a thread until stopped; counts the answers."""

    def __init__(self, port, path="/", seconds=60.0):
        import threading
        self.port, self.path, self.done, self.answered = port, path, False, 0
        self.deadline = time.monotonic() + seconds
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done and time.monotonic() < self.deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                for _ in range(50):
                    conn.request("GET", self.path)
                    conn.getresponse().read()
                    self.answered += 1
                conn.close()
            except OSError:
                time.sleep(0.01)

    def stop(self):
        self.done = True
        self.thread.join(timeout=10)
