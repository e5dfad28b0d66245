"""Issue A, app failures: an exception before any byte gives a 500 and a logged traceback and
the instance keeps serving; after the headers the connection is cut without the final chunk;
a Content-Length the app does not honour never corrupts the connection."""

import time

import pytest

from conftest import Conn, get, parse_all, request, wait_for


@pytest.fixture(scope="module")
def server(module_serve):
    return module_serve("failures_app:application")


def test_exception_before_any_byte_gives_500_logs_traceback_and_keeps_serving(server):
    r = request(server, get("/raise_before"))
    assert r.status == 500
    assert b"RuntimeError" not in r.body, "the traceback must not leak to the client"
    wait_for(lambda: "app failed before start_response" in server.stderr(), 5, message="the traceback")
    assert "Traceback (most recent call last)" in server.stderr()
    for _ in range(3):
        assert request(server, get("/ok")).body == b"ok"


def test_exception_after_headers_closes_without_the_final_chunk(server):
    with Conn(server) as c:
        c.send(get("/raise_after"))
        r = c.read_response()
    assert r.status == 200 and r.framing == "chunked"
    assert r.body == b"first"
    assert not r.complete, "the client must be able to tell the response was cut"
    assert request(server, get("/ok")).body == b"ok"


def test_fewer_bytes_than_content_length_closes_after_them(server):
    with Conn(server) as c:
        c.send(get("/short") + get("/ok"))
        data, closed = c.read_to_close(time.monotonic() + 5)
    assert closed, "the server must close a response it cannot complete"
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"12345", data
    # Bug pinned: the app's lie was corrected silently, leaving the operator no hint.
    wait_for(lambda: "5 bytes short of the Content-Length it set" in server.stderr(), 5,
             message="the warning in the log")  # fmt: skip


def test_more_bytes_than_content_length_sends_exactly_content_length(server):
    with Conn(server) as c:
        c.send(get("/long") + get("/ok", extra="Connection: close\r\n"))
        data, _ = c.read_to_close(time.monotonic() + 2)
    assert b"EXTRA" not in data, data
    responses = parse_all(data)
    assert responses[0].body == b"0123456789"
    wait_for(lambda: "longer than the Content-Length it set: 5 bytes not sent" in server.stderr(), 5,
             message="the warning in the log")  # fmt: skip
    # Whatever follows must be a clean response or nothing (a closed connection).
    rest = data.split(b"0123456789", 1)[1]
    assert rest == b"" or rest.startswith(b"HTTP/1.1 200"), data
    if rest:
        assert len(responses) == 2 and responses[1].body == b"ok" and responses[1].complete
