"""Issue A, HTTP/1.1: keep-alive, HTTP/1.0 connection handling, pipelining, request bodies
(Content-Length and chunked), Expect: 100-continue, HEAD, response framing without
Content-Length, bodiless statuses, and the Date header."""

import time
from email.utils import parsedate_to_datetime

import pytest

from conftest import Conn, get, parse_all, request


@pytest.fixture(scope="module")
def server(module_serve):
    return module_serve("http_app:application")


def test_keep_alive_serves_several_requests_on_one_connection(server):
    with Conn(server) as c:
        for i in range(5):
            c.send(get(f"/ka{i}"))
            r = c.read_response()
            assert (r.status, r.body, r.complete) == (200, f"path=/ka{i}".encode(), True)
            assert (r.header("Connection") or "").lower() != "close"


def test_http10_closes_by_default(server):
    with Conn(server) as c:
        c.send(b"GET /ten HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"path=/ten")
        assert r.version in ("HTTP/1.1", "HTTP/1.0")
        assert c.closed_within(3)


def test_http10_keep_alive_header_keeps_the_connection(server):
    with Conn(server) as c:
        for i in range(3):
            c.send(f"GET /ten{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            r = c.read_response()
            assert (r.status, r.body) == (200, f"path=/ten{i}".encode())
            assert (r.header("Connection") or "").lower() == "keep-alive"


def test_pipelined_requests_are_answered_in_order(server):
    with Conn(server) as c:
        c.send(b"".join(get(f"/pipe{i}") for i in range(10)))
        bodies = [c.read_response().body for _ in range(10)]
    assert bodies == [f"path=/pipe{i}".encode() for i in range(10)]


def test_pipelined_requests_with_bodies_are_answered_in_order(server):
    reqs = b"".join(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b)
        for b in [b"one", b"", b"three33"]
    ) + get("/after")
    with Conn(server) as c:
        c.send(reqs)
        bodies = [c.read_response().body for _ in range(4)]
    assert bodies == [b"one", b"", b"three33", b"path=/after"]


def test_post_with_content_length_reaches_the_app(server):
    body = bytes(range(256)) * 40
    r = request(server, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert (r.status, r.body) == (200, body)


def test_post_chunked_is_dechunked_for_the_app(server):
    raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n")
    r = request(server, raw)
    assert (r.status, r.body) == (200, b"hello 0123456789")


def test_expect_100_continue_is_answered_before_the_body_is_sent(server):
    with Conn(server) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_until(b"\r\n\r\n", time.monotonic() + 3)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        c.send(b"hello")
        r = c.read_response()
    assert (r.status, r.body) == (200, b"hello")


def test_expect_100_continue_is_ignored_for_http10(server):
    with Conn(server) as c:
        c.send(b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        with pytest.raises(TimeoutError):
            c.read_until(b"\r\n\r\n", time.monotonic() + 0.5)
        c.send(b"hello")
        data, _ = c.read_to_close(time.monotonic() + 3)
    assert b"100 Continue" not in data
    (r,) = parse_all(data)
    assert (r.status, r.body) == (200, b"hello")


@pytest.mark.parametrize("path", ["/head-plain", "/stream"])
def test_head_response_has_no_body(server, path):
    with Conn(server) as c:
        c.send(f"HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode() + get("/next"))
        head = c.read_response("HEAD")
        after = c.read_response()
    assert head.status == 200
    assert after.raw_head.startswith(b"HTTP/1.1 200"), after.raw_head
    assert after.body == b"path=/next"
    assert b"part0" not in head.raw_head


def test_response_without_length_is_chunked_for_http11(server):
    with Conn(server) as c:
        c.send(get("/stream?n=3") + get("/next"))
        r = c.read_response()
        assert r.framing == "chunked" and r.complete and r.body == b"part0part1part2"
        assert not r.has("Content-Length")
        assert c.read_response().body == b"path=/next"


def test_response_without_length_is_close_delimited_for_http10(server):
    with Conn(server) as c:
        c.send(b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.framing == "close" and r.complete, r
    assert r.body == b"part0part1part2"
    assert "chunked" not in (r.header("Transfer-Encoding") or "")


@pytest.mark.parametrize("code", [204, 304, 100, 103])
def test_bodiless_statuses_never_carry_a_body(server, code):
    with Conn(server) as c:
        c.send(get(f"/status?code={code}") + get("/next", extra="Connection: close\r\n"))
        data, _ = c.read_to_close(time.monotonic() + 2)
    assert b"MUST-NOT-APPEAR" not in data, data
    responses = parse_all(data)
    # Two requests, two final responses: an app's 1xx status passed on as if it were final
    # would leave the client pairing the second response with the first request.
    assert len(responses) == 2 and responses[1].body == b"path=/next", data
    first = responses[0]
    assert first.status == code or first.status >= 500, data
    if first.status == code:
        assert not first.has("Transfer-Encoding") and first.header("Content-Length") in (None, "0"), data


def test_every_response_has_a_date_header(server):
    responses = [
        request(server, get("/dated")),
        request(server, b"HEAD /dated HTTP/1.1\r\nHost: t\r\n\r\n", method="HEAD"),
        request(server, get("/stream")),
        request(server, b"GET /no-host HTTP/1.1\r\n\r\n"),
        request(server, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n"),
    ]
    for r in responses:
        date = r.header("Date")
        assert date, f"no Date header on {r.status}"
        assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5


def test_unread_request_body_is_skipped_not_parsed_as_a_request(server):
    hidden = get("/smuggled-in-body")
    with Conn(server) as c:
        c.send(b"POST /ignores-body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(hidden), hidden)
               + get("/after", extra="Connection: close\r\n"))
        data, _ = c.read_to_close(time.monotonic() + 3)
    bodies = [r.body for r in parse_all(data)]
    assert bodies == [b"path=/ignores-body", b"path=/after"], data
    assert "/smuggled-in-body" not in server.state_text("paths.log")


def test_http11_connection_close_is_honoured(server):
    with Conn(server) as c:
        c.send(get("/bye", extra="Connection: close\r\n") + get("/never-served"))
        r = c.read_response()
        assert r.body == b"path=/bye"
        assert (r.header("Connection") or "").lower() == "close"
        assert c.closed_within(3)
    assert "/never-served" not in server.state_text("paths.log")


def test_http10_keep_alive_with_unknown_length_closes_after_the_body(server):
    with Conn(server) as c:
        c.send(b"GET /stream?n=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
    assert r.framing == "close" and r.complete and r.body == b"part0part1", r


def test_expect_100_continue_with_a_body_over_the_limit_gets_only_the_413(serve):
    small = serve("http_app:application", "--max-body-size", "100")
    with Conn(small) as c:
        c.send(b"POST /over HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n"
               b"Expect: 100-continue\r\n\r\n")
        data, closed = c.read_to_close(time.monotonic() + 3)
    (r,) = parse_all(data)
    assert data.startswith(b"HTTP/1.1 413 "), data
    assert (r.status, r.interim, r.complete, closed) == (413, [], True, True), data


def test_a_body_refused_after_100_continue_gets_a_whole_100_then_a_whole_400(server):
    with Conn(server) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_until(b"\r\n\r\n", time.monotonic() + 3)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.send(b"5\r\nhelloXX0\r\n\r\n" + get("/smuggled-after-100"))
        data, closed = c.read_to_close(time.monotonic() + 3)
    assert data.startswith(b"HTTP/1.1 400 "), data
    (r,) = parse_all(data)
    assert (r.status, r.complete, closed) == (400, True, True), data
    assert "/smuggled-after-100" not in server.state_text("paths.log")
