"""Scaling figures for the token request: one instance against `--workers 1:2`.

    python3 bench/autoscale.py [--evserve PATH] [--seconds 10] [--scale-down-after 30]

Runs wrk (new connection per request, 8 connections) against `evserve --workers 1`, then
against `evserve --workers 1:2` from one instance: how long until the pool grows, the
throughput once it has grown, and how long after the load stops it shrinks back. Also the
CPU time the instances got (from /proc), so the figures can be read on a busy machine:
throughput can only double if the machine has a second core to give.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = f"{REPO / 'bench' / 'apps.py'}:token"


def wrk(port, seconds):
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{seconds}s", "-H", "Connection: close", f"http://127.0.0.1:{port}/token"],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Launcher:
    def __init__(self, evserve, workdir, port, *flags):
        self.sock = str(Path(workdir) / f"{port}.sock")
        self.log_path = Path(workdir) / f"{port}.log"
        self.evserve = evserve
        self.proc = subprocess.Popen(
            [evserve, "--port", str(port), "--control-socket", self.sock, *flags, APP],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"),
        )
        self.wait_for(r"\] ready: ", 30)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.log()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                sys.exit(f"no /{pattern}/ within {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return time.monotonic()

    def instances(self):
        """{pid: requests served} of the ready instances."""
        out = subprocess.run([self.evserve, "status", "--control-socket", self.sock],
                             capture_output=True, text=True).stdout
        rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
        return {int(r[1]): int(r[6]) for r in rows if r[3] == "ready"}

    def measure(self, port, seconds):
        before = {pid: cpu_seconds(pid) for pid in self.instances()}
        rate = wrk(port, seconds)
        cpu = sum(cpu_seconds(pid) - start for pid, start in before.items())
        return rate, cpu / seconds

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evserve", default=shutil.which("evserve") or str(REPO / ".venv-test/bin/evserve"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--scale-down-after", type=int, default=30)
    parser.add_argument("--port", type=int, default=18790)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        one = Launcher(args.evserve, workdir, args.port, "--workers", "1")
        wrk(args.port, 2)
        one_rate, one_cores = one.measure(args.port, args.seconds)
        one.stop()
        print(f"--workers 1: {one_rate:.0f} req/s, the instance got {one_cores:.2f} cores")

        port = args.port + 1
        pool = Launcher(args.evserve, workdir, port, "--workers", "1:2",
                        "--scale-down-after", str(args.scale_down_after))
        start = time.monotonic()
        load = subprocess.Popen(["wrk", "-t2", "-c8", "-d30s", "-H", "Connection: close",
                                 f"http://127.0.0.1:{port}/token"], stdout=subprocess.DEVNULL)
        grew = pool.wait_for(r"scaling up: .*adding instance 1", 30) - start
        while len(pool.instances()) < 2 and time.monotonic() - start < 60:
            time.sleep(0.05)
        ready = time.monotonic() - start
        load.terminate()
        load.wait()
        two_rate, two_cores = pool.measure(port, args.seconds)
        stopped = time.monotonic()
        shrank = pool.wait_for(r"scaling down: .*removing instance 1", args.scale_down_after + 30) - stopped
        pool.stop()
        print(f"--workers 1:2: grew {grew:.1f}s after the load began, second instance ready after "
              f"{ready:.1f}s; {two_rate:.0f} req/s ({two_rate / one_rate:.2f}x), the instances got "
              f"{two_cores:.2f} cores; shrank {shrank:.1f}s after the load stopped "
              f"(--scale-down-after {args.scale_down_after})")


if __name__ == "__main__":
    main()
