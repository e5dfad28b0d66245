"""Memory of four serving processes of one Django app that also imports pandas.

    bench/memory.sh [--workers 4] [--requests 400] [--setups evserve,evserve-preload,...]

Side by side in one run, each setup started, warmed up with the same requests, measured, and
stopped before the next starts:

- `evserve`: `evserve --workers N`, each instance imports the app itself;
- `evserve-preload`: `evserve --workers N --preload`, the app imported once and shared
  copy-on-write by the instances;
- `gunicorn`: `gunicorn -w N` (sync workers);
- `gunicorn-preload`: `gunicorn --preload -w N`.

The figure is PSS (proportional set size) summed over every process of the setup (the
launcher or arbiter, any helper process, and the instances or workers), read from
/proc/PID/smaps_rollup after the warm-up: a page shared by k processes counts 1/k in each, so
the sum is the memory the setup really takes. The report also gives RSS summed, which counts a
shared page once per process.

Run by bench/memory.sh, which makes the venv (Django, pandas, gunicorn, and evserve installed
from this checkout). Nothing here is a timed test: it is run by hand.
"""

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_DIR = HERE / "memapp"
READY_TIMEOUT = 60.0
SETUPS = ("evserve", "evserve-preload", "gunicorn", "gunicorn-preload")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(setup, bindir, port, workers):
    """The argv that starts `setup` on 127.0.0.1:port with `workers` processes."""
    app = "memapp.wsgi:application"
    if setup.startswith("evserve"):
        argv = [str(bindir / "evserve"), "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--chdir", str(HERE), app]  # fmt: skip
        if setup == "evserve-preload":
            argv.insert(1, "--preload")
        return argv
    argv = [str(bindir / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", str(workers),
            "--chdir", str(HERE), "--log-level", "warning", app]  # fmt: skip
    if setup == "gunicorn-preload":
        argv.insert(1, "--preload")
    return argv


def get(port, path="/"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(port, proc):
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before answering")
        try:
            status, body = get(port)
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no answer within {READY_TIMEOUT:.0f} s")


def children_map():
    """{ppid: [pid, ...]} for every process on the machine."""
    tree = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def descendants(pid):
    tree = children_map()
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(tree.get(p, []))
    return found


def rollup(pid):
    """(pss_kib, rss_kib) of one process, or None when it has gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] in ("Pss:", "Rss:"):
                    values[parts[0]] = int(parts[1])
    except OSError:
        return None
    return values.get("Pss:", 0), values.get("Rss:", 0)


def settle(root, workers):
    """Waits (bounded) until `root` has at least `workers` processes below it and their
    summed RSS has stopped growing for a second: every one has imported the app."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        pids = descendants(root)
        figures = [f for f in (rollup(p) for p in pids) if f]
        total = sum(f[1] for f in figures)
        if len(pids) > workers and last is not None and abs(total - last) <= total * 0.005:
            return
        last = total
        time.sleep(1.0)
    raise RuntimeError(f"the processes did not settle within {READY_TIMEOUT:.0f} s")


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def measure(setup, bindir, workers, requests):
    port = free_port()
    argv = command(setup, bindir, port, workers)
    log = tempfile.TemporaryFile()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            env=env, start_new_session=True)  # fmt: skip
    try:
        body = wait_ready(port, proc)
        if b"rows" not in body:
            raise RuntimeError(f"unexpected answer {body[:80]!r}")
        # Every process has started and finished importing before requests are counted;
        # then every process serves its share, so each has touched what a request touches.
        settle(proc.pid, workers)
        for _ in range(requests):
            get(port)
        settle(proc.pid, workers)
        pids = descendants(proc.pid)
        figures = [f for f in (rollup(p) for p in pids) if f]
        pss = sum(f[0] for f in figures) / 1024
        rss = sum(f[1] for f in figures) / 1024
        return {"processes": len(figures), "pss": pss, "rss": rss}
    except Exception as e:
        log.seek(0)
        tail = log.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"{setup}: {e}\n{tail}") from None
    finally:
        stop(proc)
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindir", default=str(Path(sys.executable).parent),
                        help="venv bin directory holding evserve and gunicorn")  # fmt: skip
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--setups", default=",".join(SETUPS))
    args = parser.parse_args()
    bindir = Path(args.bindir)
    setups = [s for s in args.setups.split(",") if s]
    for s in setups:
        if s not in SETUPS:
            sys.exit(f"memory.py: unknown setup {s!r} (known: {', '.join(SETUPS)})")
    results = {}
    for setup in setups:
        print(f"memory: measuring {setup} ...", file=sys.stderr, flush=True)
        results[setup] = measure(setup, bindir, args.workers, args.requests)
    print(f"\nDjango view importing pandas, {args.workers} workers, "
          f"after {args.requests} requests; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")  # fmt: skip
    print("| setup | processes | PSS summed | RSS summed | PSS vs gunicorn -w |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = results.get("gunicorn", {}).get("pss")
    for setup, r in results.items():
        ratio = f"{r['pss'] / base:.2f}" if base else "-"
        print(f"| {setup} | {r['processes']} | {r['pss']:.0f} MiB | {r['rss']:.0f} MiB | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
