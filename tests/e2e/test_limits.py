"""Issue B, limits: an over-long request line gets 414, an over-large head or too many fields
431, a body over --max-body-size 413 (from Content-Length before the body is sent, and while
de-chunking); the connection is closed after each."""


import pytest

from conftest import Conn


@pytest.fixture(scope="module")
def server(module_serve):
    return module_serve("http_app:application", "--max-body-size", "1K")


def answer_and_close(server, raw, timeout=5):
    with Conn(server) as c:
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading once it has decided
        r = c.read_response(timeout=timeout)
        closed = c.closed_within(3)
    return r, closed


def test_request_line_over_8k_gets_414_and_close(server):
    r, closed = answer_and_close(server, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert r.status == 414 and closed


def test_request_line_just_under_the_limit_is_served(server):
    path = "/" + "a" * 8000
    with Conn(server) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert c.read_response().body == f"path={path}".encode()


def test_header_block_over_64k_gets_431_and_close(server):
    headers = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 8000) for i in range(9))
    r, closed = answer_and_close(server, b"GET / HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
    assert r.status == 431 and closed


def test_more_than_100_header_fields_gets_431_and_close(server):
    headers = b"".join(b"X-F%d: v\r\n" % i for i in range(101))
    r, closed = answer_and_close(server, b"GET / HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
    assert r.status == 431 and closed


def test_body_over_max_from_content_length_gets_413_before_the_body_is_sent(server):
    with Conn(server) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        r = c.read_response(timeout=3)  # no body sent: the answer must not wait for it
        assert r.status == 413
        assert c.closed_within(3)


def test_body_over_max_while_dechunking_gets_413_and_close(server):
    chunk = b"400\r\n" + b"c" * 1024 + b"\r\n"
    r, closed = answer_and_close(
        server, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n")
    assert r.status == 413 and closed
    assert "/echo" not in server.state_text("paths.log")


def test_body_at_the_limit_is_accepted(server):
    body = b"b" * 1024
    with Conn(server) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n" + body)
        assert c.read_response().body == body


def test_exactly_100_header_fields_are_accepted(server):
    headers = b"".join(b"X-F%d: v\r\n" % i for i in range(99))
    with Conn(server) as c:
        c.send(b"GET /hundred HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
        assert c.read_response().body == b"path=/hundred"


@pytest.mark.parametrize("raw", [b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
                                 b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"])
def test_limit_responses_carry_date_and_connection_close(server, raw):
    r, _ = answer_and_close(server, raw)
    assert r.status in (413, 414)
    assert r.has("Date")
    assert (r.header("Connection") or "").lower() == "close"
