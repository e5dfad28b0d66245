"""Several hosts behind one nginx, from `evserve nginx-config`: --drain HOST, then
`nginx -s reload`, takes the host out without failing a request, and undraining brings it
back. A second launcher on 127.0.0.2 stands in for the second host; nginx is the real one,
run here with the generated configuration.

The load opens one connection per request: on `nginx -s reload` the old workers close their
idle keep-alive client connections, which a client retries (RFC 9112, 9.3.1); that is not
what this test measures.
"""

import subprocess
import threading
import time

import pytest

from test_launcher import (  # noqa: F401 (launcher_start is a fixture)
    APPS,
    EVSERVE,
    NGINX,
    launcher_free_ports,
    launcher_get,
    launcher_start,
    launcher_wait,
    needs_nginx,
)


class FreshConnectionLoad:
    """Threads sending GET / to 127.0.0.1:port, one connection per request, recording
    (time, body) of each answer and every failure; bounded by `max_seconds`."""

    def __init__(self, port, threads=6, max_seconds=90):
        self.port = port
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.answers = []
        self.failures = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            try:
                status, body = launcher_get(self.port, timeout=10)
                result = (time.monotonic(), body) if status == 200 else f"HTTP {status}: {body[:200]}"
            except Exception as e:  # noqa: BLE001 (every failure is recorded)
                result = repr(e)
            with self.lock:
                (self.answers if isinstance(result, tuple) else self.failures).append(result)

    def answered_by(self, pids, after):
        """How many answers after `after` came from one of `pids`, and how many in all."""
        with self.lock:
            late = [body for when, body in self.answers if when > after]
        return sum(1 for b in late if int(b.split()[0].split("=")[1]) in pids), len(late)

    def finish(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(15)
        return len(self.answers), self.failures


def write_config(conf, listen, backends, run_dir, drain=()):
    args = [str(EVSERVE), "nginx-config", "--listen", f"127.0.0.1:{listen}", "--run-dir", str(run_dir)]
    for backend in backends:
        args += ["--backend", backend]
    for host in drain:
        args += ["--drain", host]
    out = subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    tmp = conf.with_suffix(".new")
    tmp.write_text(out.stdout)
    tmp.replace(conf)
    return out.stdout


def nginx_reload(conf, run_dir):
    out = subprocess.run(
        [NGINX, "-e", str(run_dir / "error.log"), "-c", str(conf), "-s", "reload"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr


@pytest.fixture
def two_hosts(launcher_start, tmp_path):
    """Host A on 127.0.0.1 and host B on 127.0.0.2 (each a launcher with two instances), and
    one nginx in front of both; yields the pieces, stops nginx at the end."""
    listen, a1, a2, b1, b2 = launcher_free_ports(5)
    host_a = launcher_start("--port-range", f"{a1}-{a2}", APPS / "launcher_app.py:app")
    # Its own directory: `evserve status` there reports host B's launcher only.
    (tmp_path / "host_b").mkdir()
    host_b = launcher_start(
        "--host", "127.0.0.2", "--port-range", f"{b1}-{b2}", APPS / "launcher_app.py:app",
        cwd=tmp_path / "host_b",
    )
    host_a.wait_ready()
    host_b.wait_ready()
    b_pids = set(host_b.instance_pids().values())
    assert len(b_pids) == 2 and not b_pids & set(host_a.instance_pids().values())
    run_dir = tmp_path / "nginx-run"
    run_dir.mkdir()
    conf = tmp_path / "nginx.conf"
    backends = [f"127.0.0.1:{a1}-{a2}", f"127.0.0.2:{b1}-{b2}"]
    write_config(conf, listen, backends, run_dir)
    nginx = subprocess.Popen(
        [NGINX, "-e", str(run_dir / "error.log"), "-c", str(conf), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        launcher_wait(lambda: nginx.poll() is not None or _answers(listen), 15, "nginx to answer")
        assert nginx.poll() is None, nginx.stderr.read().decode()
        yield {
            "listen": listen, "conf": conf, "run_dir": run_dir, "backends": backends,
            "b_pids": b_pids,
        }
    finally:
        nginx.terminate()
        try:
            nginx.wait(15)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(5)


def _answers(port):
    try:
        return launcher_get(port, timeout=2)[0] == 200
    except OSError:
        return False


@needs_nginx
def test_drain_then_reload_takes_a_host_out_without_failing_a_request(two_hosts):
    h = two_hosts
    load = FreshConnectionLoad(h["listen"])
    launcher_wait(lambda: load.answered_by(h["b_pids"], 0)[0] >= 20, 20, "host B to get requests")
    text = write_config(h["conf"], h["listen"], h["backends"], h["run_dir"], drain=["127.0.0.2"])
    assert text.count(" down;") == 2, text
    drained_at = time.monotonic()
    nginx_reload(h["conf"], h["run_dir"])
    # In-flight requests finish on host B; after a bounded while, host B gets nothing.
    settle = drained_at + 3.0
    launcher_wait(lambda: load.answered_by(h["b_pids"], settle)[1] >= 300, 30, "300 answers after the drain")
    from_b, total = load.answered_by(h["b_pids"], settle)
    assert from_b == 0, f"{from_b} of {total} answers from the drained host"
    # Undrained, host B gets its share again.
    write_config(h["conf"], h["listen"], h["backends"], h["run_dir"])
    back_at = time.monotonic()
    nginx_reload(h["conf"], h["run_dir"])
    launcher_wait(lambda: load.answered_by(h["b_pids"], back_at)[0] >= 20, 30, "host B back in rotation")
    answered, failures = load.finish()
    print(f"drain and undrain under load: {answered} requests, {len(failures)} failed")
    assert failures == [], failures[:5]
