"""Draining keeps its promise to keep-alive clients: a request sent on an idle keep-alive
connection just as the instance starts draining is answered (with `Connection: close`), not
met by a closed socket.

Bug pinned: on a stop signal an instance closed every idle keep-alive connection at once, so a
client that had just sent its next request on one got no answer; a rolling reload of
`--workers` instances under keep-alive load failed requests with "Remote end closed
connection without response"."""

import signal
import time

from conftest import Conn, get, wait_for
from test_launcher import (  # noqa: F401 (launcher_start is a fixture)
    APPS,
    LauncherLoad,
    launcher_free_ports,
    launcher_start,
    launcher_wait,
)

APP = "signals_app:application"


def test_a_request_on_an_idle_connection_during_a_drain_is_answered(serve):
    server = serve(APP)
    idle = Conn(server)
    idle.send(get("/"))
    assert idle.read_response().body == b"ok"
    server.signal(signal.SIGTERM)
    wait_for(lambda: "stop signal" in server.stderr(), 5, message="the drain to begin")
    idle.send(get("/"))
    r = idle.read_response(timeout=5)
    assert r.status == 200 and r.body == b"ok", r
    assert (r.header("Connection") or "").lower() == "close", r
    assert idle.closed_within(2)
    idle.close()
    assert server.wait_exit(5) == 0, server.stderr()


def test_a_workers_reload_under_keep_alive_load_fails_no_request(launcher_start, tmp_path):
    port = launcher_free_ports(1)[0]
    p = launcher_start("--workers", "2", "--port", port, APPS / "launcher_app.py:app")
    p.wait_ready()
    load = LauncherLoad(port, threads=6, max_seconds=60)
    load.wait_for_requests(200)
    for round_number in range(2):
        hup_at = time.monotonic()
        p.proc.send_signal(signal.SIGHUP)
        p.wait_for(r"reload: done", 30, after=hup_at)
        done = load.ok
        load.wait_for_requests(done + 200)
    ok, failures = load.finish()
    assert failures == [], failures[:5]
    assert p.stop() == 0
