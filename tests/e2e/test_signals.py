"""Issue A, signals: SIGTERM and SIGINT let an in-flight request finish, run the app's atexit
handlers (flushing their printed output even with PYTHONUNBUFFERED unset) and exit 0; the
graceful timeout bounds the wait; a second SIGINT exits at once; Ctrl-C sent to the whole
process group while the app runs a subprocess still drains gracefully."""

import os
import signal
import time

import pytest

from conftest import Conn, get, server_env, wait_for

APP = "signals_app:application"


def start_in_flight(server, path):
    c = Conn(server, timeout=40)
    c.send(get(path))
    wait_for(lambda: server.state_file("in-flight").exists(), 5, message="the request to reach the app")
    return c


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_the_in_flight_request_finish_and_exits_0(serve, signum):
    server = serve(APP, env=server_env(unset=["PYTHONUNBUFFERED"]))
    c = start_in_flight(server, "/sleep?secs=1.5")
    server.signal(signum)
    r = c.read_response(timeout=10)
    c.close()
    assert (r.status, r.body) == (200, b"slept")
    assert server.wait_exit(10) == 0, server.stderr()
    assert "atexit ran" in server.state_text("atexit.log")
    assert "ATEXIT-PRINTED by signals_app" in server.stdout(), "atexit output lost (stdout not flushed at exit)"
    assert "KeyboardInterrupt" not in server.stderr()
    assert "Traceback" not in server.stderr()


def test_signal_stops_accepting_new_connections(serve):
    server = serve(APP)
    c = start_in_flight(server, "/sleep?secs=1.5")
    server.signal(signal.SIGTERM)
    assert c.read_response(timeout=10).status == 200
    c.close()
    assert server.wait_exit(10) == 0


@pytest.mark.parametrize("path", ["/sleep?secs=30", "/drip?secs=30"])
def test_graceful_timeout_bounds_the_wait(serve, path):
    server = serve(APP, "--graceful-timeout", "1")
    c = start_in_flight(server, path)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_exit(6)
    took = time.monotonic() - started
    c.close()
    assert took < 3.5, f"exited {took:.1f}s after SIGTERM with --graceful-timeout 1"


def test_second_sigint_exits_at_once(serve):
    server = serve(APP)
    c = start_in_flight(server, "/drip?secs=30")
    server.signal(signal.SIGINT)
    time.sleep(0.3)  # the two presses of Ctrl-C are apart in time, on purpose
    assert server.proc.poll() is None, "the first SIGINT must drain, not exit"
    started = time.monotonic()
    server.signal(signal.SIGINT)
    server.wait_exit(3)
    assert time.monotonic() - started < 2.0
    c.close()


def test_ctrl_c_to_the_process_group_drains_an_app_running_a_subprocess(serve):
    server = serve(APP)
    c = start_in_flight(server, "/subprocess?secs=1.5")
    os.killpg(server.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    r = c.read_response(timeout=10)
    c.close()
    assert r.status == 200 and r.body.startswith(b"child exit"), r
    assert server.wait_exit(10) == 0, server.stderr()
    assert "KeyboardInterrupt" not in server.stderr()
    assert "Traceback" not in server.stderr()
    assert "atexit ran" in server.state_text("atexit.log")


def test_stop_signal_does_not_wait_for_idle_keep_alive_connections(serve):
    server = serve(APP)
    idle = Conn(server)
    idle.send(get("/"))
    assert idle.read_response().body == b"ok"
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(5) == 0, server.stderr()
    assert time.monotonic() - started < 2.0
    assert idle.closed_within(1)
    idle.close()


def test_stop_signal_waits_for_a_half_sent_head_at_most_the_header_timeout(serve):
    server = serve(APP, "--header-timeout", "2")
    partial = Conn(server)
    partial.send(b"GET / HTTP/1.1\r\nHo")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(6) == 0, server.stderr()
    assert time.monotonic() - started < 4.0
    partial.close()


@pytest.mark.parametrize(
    "first, second",
    [(signal.SIGTERM, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGINT)],
    ids=["term+int", "term+term", "int+int"],
)
def test_two_stop_signals_at_once_are_one_graceful_stop(serve, first, second):
    server = serve(APP)
    c = start_in_flight(server, "/sleep?secs=1.5")
    os.kill(server.pid, first)
    os.kill(server.pid, second)
    r = c.read_response(timeout=10)
    c.close()
    assert (r.status, r.body) == (200, b"slept"), server.stderr()
    assert server.wait_exit(10) == 0, server.stderr()
    assert "exiting now" not in server.stderr()


def test_two_stop_signals_at_once_on_an_idle_instance_are_one_graceful_stop(serve):
    server = serve(APP)
    for _ in range(3):
        c = Conn(server, timeout=10)
        c.send(get("/sleep?secs=0"))
        assert c.read_response(timeout=10).status == 200
        c.close()
    os.kill(server.pid, signal.SIGTERM)
    os.kill(server.pid, signal.SIGINT)
    assert server.wait_exit(10) == 0, server.stderr()
    assert "second stop signal" not in server.stderr(), server.stderr()
