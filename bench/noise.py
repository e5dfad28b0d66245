#!/usr/bin/env python3
"""How much of each core the machine itself takes away: a hiccup meter.

One busy process per core reads the clock in a tight loop for a few seconds;
any gap between two reads of 50 µs or more is time the core spent elsewhere:
interrupts, kernel work, other processes or, on a virtual machine, the host
not running this virtual CPU. Nothing else of the benchmark runs meanwhile.

Latency percentiles of a run can be no steadier than this: a stall of a
core delays every request in flight on it, whichever server is measured.

    bench/.venv/bin/python bench/noise.py [--seconds 5]
"""

import argparse
import json
import os
import subprocess
import sys

GAP_NS = 50_000

# Run in a child pinned to one core; prints one JSON line.
_METER = r"""
import json, sys, time
clock = time.perf_counter_ns
seconds, gap_ns = float(sys.argv[1]), int(sys.argv[2])
start = prev = clock()
end = start + int(seconds * 1e9)
gaps = []
while prev < end:
    now = clock()
    if now - prev >= gap_ns:
        gaps.append(now - prev)
    prev = now
print(json.dumps({"wall_ns": prev - start, "gaps_ns": gaps}))
"""


def measure(seconds=5.0, cores=None):
    """{core: {lost_pct, over_250us, over_1ms, longest_ms}} with every core metered at once."""
    cores = cores if cores is not None else sorted(os.sched_getaffinity(0))
    procs = {
        core: subprocess.Popen(
            ["taskset", "-c", str(core), sys.executable, "-c", _METER, str(seconds), str(GAP_NS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for core in cores
    }
    out = {}
    for core, proc in procs.items():
        stdout, _ = proc.communicate(timeout=seconds + 30)
        if proc.returncode != 0:
            continue
        data = json.loads(stdout)
        gaps, wall = data["gaps_ns"], max(data["wall_ns"], 1)
        out[core] = {
            "seconds": wall / 1e9,
            "lost_pct": 100.0 * sum(gaps) / wall,
            "over_250us": sum(g >= 250_000 for g in gaps),
            "over_1ms": sum(g >= 1_000_000 for g in gaps),
            "longest_ms": max(gaps, default=0) / 1e6,
        }
    return out


def describe(noise):
    """One line per core, for the report."""
    return [
        "core %s: %.1f %% of %.0f s lost in gaps of 50 µs or more; %d gaps of 250 µs or more, "
        "%d of 1 ms or more, the longest %.1f ms"
        % (core, n["lost_pct"], n["seconds"], n["over_250us"], n["over_1ms"], n["longest_ms"])
        for core, n in sorted(noise.items(), key=lambda kv: int(kv[0]))
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per core (default 5)")
    args = parser.parse_args()
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    for line in describe(measure(args.seconds)):
        print(line)


if __name__ == "__main__":
    main()
