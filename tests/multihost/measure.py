"""Measures what docs/deployment.md ("Several hosts") quotes, on this machine:

    python tests/multihost/measure.py            (as root; EVSERVE_BIN as for the tests)

Builds the same cluster as the tests (3 hosts x 2 instances, nginx, a client, each a network
namespace), then prints
- throughput through nginx with 1, 2 and 3 hosts in its configuration (wrk in the client
  namespace when installed, else nsclient.py's load without a rate limit), trivial app;
- the failover figures of the scenarios: a host killed, a host's link down for 5 s and
  back, a rolling deploy, a drain (when `evserve nginx-config` has --drain);
- with --proxy-connect-timeout TIME, the generated proxy_connect_timeout replaced by TIME;
- with --link-down SECONDS, a host's link down for that long (60 s or more shows what
  happens to requests that were in flight on it when nginx's read timeout runs out).

All hosts share this machine's cores, so throughput with more hosts is bounded by the CPU
(nginx, every instance and the load generator run on the same cores): it shows the cost of
the balancing, not how far more machines would scale.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios  # noqa: E402
from cluster import BALANCER_ADDR, Cluster, why_unavailable  # noqa: E402
from loadrun import LoadRun, table  # noqa: E402


def throughput(c, hosts, seconds, connections):
    c.reload_nginx(hosts=hosts)
    time.sleep(1.0)  # nginx's old workers finish; the new ones take the traffic
    wrk = shutil.which("wrk")
    if wrk:
        argv = ["ip", "netns", "exec", c.client_ns, wrk, "-t2", f"-c{connections}", f"-d{seconds}s",
                f"http://{BALANCER_ADDR}:80/"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"hosts": hosts, "tool": "wrk", "req/s": round(rate), "non-2xx": int(errors.group(1)) if errors else 0}
    with LoadRun(c, f"tput{hosts}", duration=seconds, rate=0, concurrency=connections, post_every=0) as load:
        pass
    ok = [r for r in load.records if r["status"] == 200]
    return {"hosts": hosts, "tool": "nsclient", "req/s": round(len(ok) / seconds),
            "non-2xx": len(load.records) - len(ok)}


def summary(hosts, rows):
    rates = sorted(r["req/s"] for r in rows)
    return {"hosts": hosts, "instances": 2 * hosts, "tool": rows[0]["tool"], "median req/s": rates[len(rates) // 2],
            "runs": " ".join(str(r) for r in rates), "non-2xx": sum(r["non-2xx"] for r in rows)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each throughput run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per host count")
    parser.add_argument("--link-down", type=float, default=0, help="also: a link down this many seconds")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--proxy-connect-timeout", metavar="TIME",
                        help="replace the generated proxy_connect_timeout (e.g. 1s) to measure that value")
    args = parser.parse_args()
    reason = why_unavailable()
    if reason:
        print(f"skipped: {reason}")
        return 0
    c = Cluster(tempfile.mkdtemp(prefix="evserve-multihost-"))
    c.connect_timeout_override = args.proxy_connect_timeout
    try:
        c.build()
        print(c.describe())
        c.start_backends()
        c.start_nginx()
        runs = {n: [] for n in (1, 2, 3)}
        # Interleaved rounds, so a busy moment of the shared machine hits every host count.
        for _ in range(0 if args.skip_throughput else args.rounds):
            for n in runs:
                runs[n].append(throughput(c, n, args.seconds, args.connections))
        c.reload_nginx()
        if not args.skip_throughput:
            print(f"\nthroughput through nginx (trivial app, {args.connections} connections, "
                  "all on this machine's cores):")
            table([summary(n, rows) for n, rows in runs.items()])
        if not args.skip_failover:
            scenarios.host_killed(c, c.backends[0])
            scenarios.link_down(c, c.backends[1], down_for=5.0)
            scenarios.rolling_deploy(c, "v2")
            if scenarios.has_drain():
                scenarios.drained(c, c.backends[2])
                c.reload_nginx()
        if args.link_down:
            scenarios.link_down(c, c.backends[1], down_for=args.link_down)
        print("\nfailover (300 requests/s, 16 connections, every 5th a POST):")
        table(scenarios.RESULTS)
        print(f"\nnginx: fail_timeout {scenarios.fail_timeout(c):g} s, "
              f"proxy_connect_timeout {scenarios.connect_timeout(c):g} s")
        print(f"records and logs: {c.workdir}")
    finally:
        c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
