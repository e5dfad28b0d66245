"""Issue B, timeouts: a head trickled too slowly, a stalled body, an idle keep-alive
connection and a client that never reads a large response are all cut on time, and the
server's open descriptors return to their baseline."""

import socket
import time

import pytest

from conftest import Conn, get, request, wait_for


@pytest.fixture(scope="module")
def server(module_serve):
    server = module_serve("files_app:application", "--header-timeout", "2", "--body-timeout", "2",
                          "--keep-alive", "2", "--write-timeout", "2")
    request(server, get("/hello"))  # warm up lazily opened descriptors before any baseline
    return server


def closed_after(conn, limit):
    """Seconds until the server closes `conn` (reading and discarding what it sends)."""
    started = time.monotonic()
    assert conn.closed_within(limit), f"still open after {limit}s"
    return time.monotonic() - started


def test_slowly_trickled_head_is_cut_at_header_timeout(server):
    head = get("/hello") + b"X-Padding: " + b"p" * 40 + b"\r\n"
    with Conn(server) as c:
        started = time.monotonic()
        cut = False
        for i in range(len(head)):  # 0.2 s per byte: the whole head would take ~15 s
            try:
                c.send(head[i:i + 1])
            except OSError:
                cut = True
                break
            if c.closed_within(0.2):
                cut = True
                break
        took = time.monotonic() - started
    assert cut, "the trickled head was never cut"
    assert 1.5 <= took <= 5, f"cut after {took:.1f}s with --header-timeout 2"


def test_stalled_body_is_cut_at_body_timeout(server):
    with Conn(server) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        took = closed_after(c, 6)
    assert 1.5 <= took <= 5, f"cut after {took:.1f}s with --body-timeout 2"


def test_idle_keep_alive_connection_is_closed_at_keep_alive(server):
    with Conn(server) as c:
        c.send(get("/hello"))
        assert c.read_response().body == b"hello"
        took = closed_after(c, 6)
    assert 1.5 <= took <= 5, f"closed after {took:.1f}s with --keep-alive 2"


def test_client_that_never_reads_is_dropped_at_write_timeout(server):
    baseline = server.fd_count()
    c = Conn(server)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    c.send(get("/big?mb=100&id=never-read"))
    # Once the socket buffers fill, nothing moves; the server must give up within ~2 s.
    wait_for(lambda: "never-read closed" in server.state_text("close.log"), 8,
             message="the stalled response to be dropped (close() called)")
    data, closed = c.read_to_close(time.monotonic() + 5, limit=200 * 1024 * 1024)
    c.close()
    assert closed and len(data) < 100 * 1024 * 1024
    wait_for(lambda: server.fd_count() <= baseline, 5, message=f"fd count back to {baseline}")
