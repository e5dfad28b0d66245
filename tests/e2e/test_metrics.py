"""`--metrics HOST:PORT`: Prometheus metrics from the launcher (`--workers`, `--port-range`)
and from an instance run alone, parsed by the real Prometheus parser (prometheus_client);
the counters must equal what the test sent, RSS and CPU what /proc says, and restarts
their reason. All traffic goes to 127.0.0.1; every wait is bounded.
"""

import json
import os
import signal
import socket

import pytest

from conftest import free_port, run_evserve, wait_for
from metrics_helpers import Launcher, fetch, get, scrape, total
from test_launcher import launcher_free_ports

MAX_BODY = 100


def raw(port, data, timeout=5.0):
    """Sends `data` on a new connection; the first line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while b"\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


def send_traffic(port, gets=5, posts=3):
    """GETs, POSTs, a 404, a 400 and a 413 to `port`; what the metrics should then say."""
    for _ in range(gets):
        assert get(port, "/") == (200, b"hello\n")
    import http.client
    for _ in range(posts):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/echo", body=b"abc")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"abc")
        conn.close()
    assert get(port, "/missing") == (404, b"missing\n")
    assert raw(port, b"GET / HTTP/1.1\r\n\r\n").startswith("HTTP/1.1 400")
    too_big = f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {MAX_BODY * 10}\r\n\r\n"
    assert raw(port, too_big.encode()).startswith("HTTP/1.1 413")
    return {
        ("GET", "2xx"): gets,
        ("POST", "2xx"): posts,
        ("GET", "4xx"): 2,
        ("POST", "4xx"): 1,
        "bytes": gets * 6 + posts * 3 + 8,
        "connections": gets + posts + 3,
    }


def counts_match(samples, expected, **labels):
    for key, want in expected.items():
        if isinstance(key, tuple):
            method, status = key
            have = total(samples, "evserve_requests_total", method=method, status=status, **labels)
        elif key == "bytes":
            have = total(samples, "evserve_response_body_bytes_total", **labels)
        else:
            continue
        if have != want:
            return False
    return True


def check_counters(metrics_port, expected, **labels):
    """Waits for the launcher's view to catch up, then checks every counter exactly."""
    samples = wait_for(
        lambda: (lambda s: counts_match(s, expected, **labels) and s)(scrape(metrics_port)),
        10, interval=0.1, message=f"metrics to show {expected}",
    )
    requests = sum(v for k, v in expected.items() if isinstance(k, tuple))
    assert total(samples, "evserve_requests_total", **labels) == requests
    assert total(samples, "evserve_request_duration_seconds_count", **labels) == requests
    assert total(samples, "evserve_request_duration_seconds_bucket", le="+Inf", **labels) == requests
    assert total(samples, "evserve_requests_refused_total", reason="400", **labels) == 1
    assert total(samples, "evserve_requests_refused_total", reason="413", **labels) == 1
    assert total(samples, "evserve_requests_refused_total", reason="408", **labels) == 0
    # The readiness probes connect too: at least the test's own connections.
    assert total(samples, "evserve_connections_accepted_total", **labels) >= expected["connections"]
    assert total(samples, "evserve_requests_in_flight", **labels) == 0
    return samples


@pytest.fixture
def launchers(tmp_path):
    started = []

    def start(*flags):
        launcher = Launcher(tmp_path / str(len(started)), *flags)
        started.append(launcher)
        return launcher

    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    yield start
    for launcher in started:
        launcher.stop()


def test_workers_mode_counts_what_was_sent(launchers):
    port = free_port()
    launcher = launchers("--workers", "2", "--port", str(port), "--max-body-size", str(MAX_BODY))
    launcher.wait_ready(2)
    expected = send_traffic(port)
    samples = check_counters(launcher.metrics_port, expected)
    assert total(samples, "evserve_instances", state="starting") == 0
    # The status page's figures are the same.
    status = json.loads(fetch(launcher.metrics_port, "/status.json")[2])
    assert sorted(i["slot"] for i in status["instances"]) == [0, 1]
    assert sum(i["requests"] for i in status["instances"]) == sum(
        v for k, v in expected.items() if isinstance(k, tuple))
    for row in status["instances"]:
        assert abs(row["rss"] - proc_rss(row["pid"])) <= max(0.1 * row["rss"], 2 << 20), row
    assert {labels["instance"] for n, labels, _ in samples if n == "evserve_requests_total"} <= {"0", "1"}


def test_port_range_mode_counts_per_instance(launchers):
    first, second = launcher_free_ports(2)
    launcher = launchers("--port-range", f"{first}-{second}", "--max-body-size", str(MAX_BODY))
    launcher.wait_ready(2)
    expected = send_traffic(first, gets=4, posts=2)
    check_counters(launcher.metrics_port, expected, instance="0")
    for _ in range(7):
        assert get(second, "/") == (200, b"hello\n")
    wait_for(
        lambda: total(scrape(launcher.metrics_port), "evserve_requests_total", instance="1") == 7,
        10, interval=0.1, message="instance 1's seven requests",
    )


def test_a_single_instance_serves_its_own_metrics(serve):
    metrics_port = free_port()
    server = serve("metrics_app:app", "--metrics", f"127.0.0.1:{metrics_port}",
                   "--max-body-size", str(MAX_BODY))
    def answers():
        try:
            return fetch(metrics_port)[0] == 200
        except OSError:
            return False
    wait_for(answers, 10, interval=0.05, message="the metrics listener")
    expected = send_traffic(server.port)
    samples = check_counters(metrics_port, expected, instance="0")
    assert total(samples, "evserve_connections_open", instance="0") == 0
    assert fetch(metrics_port, "/nowhere")[0] == 404


def proc_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def instance_pids(samples):
    return {labels["instance"]: int(labels["pid"]) for n, labels, _ in samples
            if n == "evserve_instance_resident_memory_bytes"}


def test_rss_and_cpu_match_proc_and_a_kill_9_counts_as_a_crash(launchers):
    port = free_port()
    launcher = launchers("--workers", "2", "--port", str(port), "--max-body-size", str(MAX_BODY))
    launcher.wait_ready(2)
    samples = scrape(launcher.metrics_port)
    pids = instance_pids(samples)
    assert sorted(pids) == ["0", "1"]
    for slot, pid in pids.items():
        rss = total(samples, "evserve_instance_resident_memory_bytes", instance=slot)
        assert abs(rss - proc_rss(pid)) <= max(0.1 * rss, 2 << 20), (slot, rss, proc_rss(pid))
        cpu = total(samples, "evserve_instance_cpu_seconds_total", instance=slot)
        assert 0 < cpu <= proc_cpu_seconds(pid) + 0.01, (cpu, proc_cpu_seconds(pid))
        assert proc_cpu_seconds(pid) - cpu < 1.0

    expected = send_traffic(port)
    check_counters(launcher.metrics_port, expected)
    os.kill(pids["0"], signal.SIGKILL)
    after = wait_for(
        lambda: (lambda s: total(s, "evserve_restarts_total", reason="crash") == 1
                 and total(s, "evserve_instances", state="ready") == 2 and s)(scrape(launcher.metrics_port)),
        20, interval=0.1, message="the killed instance to be replaced",
    )
    assert instance_pids(after)["0"] != pids["0"]
    for reason in ("timeout", "reload", "recycle", "exit"):
        assert total(after, "evserve_restarts_total", reason=reason) == 0
    # The dead process's counts stay in its slot's totals.
    assert counts_match(after, expected)


def test_a_reload_counts_one_restart_per_instance(launchers):
    port = free_port()
    launcher = launchers("--workers", "2", "--port", str(port))
    launcher.wait_ready(2)
    launcher.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: total(scrape(launcher.metrics_port), "evserve_restarts_total", reason="reload") == 2,
        30, interval=0.1, message="two reload restarts",
    )


def test_the_metrics_listener_refuses_what_it_does_not_serve(launchers):
    launcher = launchers("--workers", "1", "--port", str(free_port()))
    launcher.wait_ready(1)
    port = launcher.metrics_port
    status, headers, _ = fetch(port, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert fetch(port, "/nowhere")[0] == 404
    status, headers, body = fetch(port, "/metrics", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 0
    assert raw(port, b"\x01\x02 nonsense\r\n\r\n").startswith("HTTP/1.1 400")
    assert raw(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n").startswith("HTTP/1.1 431")
    # Still serving after all that.
    assert fetch(port)[0] == 200


def test_a_bad_metrics_address_is_a_one_line_error(tmp_path):
    result = run_evserve("--metrics", "nowhere", "metrics_app:app")
    assert result.returncode != 0
    assert "--metrics" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = run_evserve("--workers", "1", "--port", str(free_port()),
                             "--metrics", f"127.0.0.1:{busy}", "metrics_app:app")
    assert result.returncode == 1
    assert f"--metrics 127.0.0.1:{busy}: cannot listen" in result.stderr, result.stderr
