"""HTTP rules (RFC 9110, RFC 9112) on the wire: malformed heads refused as soon as they are
seen, the Host field validated, the absolute-form authority used as the host, the status
codes and framing headers an app may send, and the access log line for every response."""

import json
import signal
import time

import pytest

from conftest import Conn, exchange, get, parse_all, request, wait_for


@pytest.fixture(scope="module")
def server(module_serve):
    return module_serve("rfc_app:application")


@pytest.mark.parametrize("status", ["600 High", "999 Weird", "099 Low"])
def test_a_status_outside_100_to_599_is_answered_500(server, status):
    r = request(server, get("/status?s=" + status.replace(" ", "+")))
    assert r.status == 500, r


def test_a_204_never_carries_content_length_or_transfer_encoding(server):
    with Conn(server) as c:
        c.send(get("/204-with-length") + get("/fields"))
        first = c.read_response()
        after = c.read_response()
    assert first.status == 204, first
    assert not first.has("Content-Length") and not first.has("Transfer-Encoding"), first.raw_head
    assert after.status == 200 and after.complete, after


TLS_CLIENT_HELLO_START = bytes.fromhex("160301020001" "0001fc0303") + b"\x11" * 32


@pytest.mark.parametrize("partial, status", [
    (b"G@T / HTTP/1.1\r\n", 400),
    (TLS_CLIENT_HELLO_START, 400),
    (b"GET / HTTP/7.0\r\n", 505),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n", 400),
], ids=["bad_method", "tls_client_hello", "http_7", "bad_header_line"])
def test_a_malformed_head_is_refused_before_it_ends_not_after_the_header_timeout(server, partial, status):
    started = time.monotonic()
    with Conn(server) as c:
        c.send(partial)
        r = c.read_response(timeout=3)
    assert r.status == status, r
    assert time.monotonic() - started < 3


def fields(server, raw):
    r = request(server, raw)
    assert r.status == 200, r
    return json.loads(r.body)


@pytest.mark.parametrize("host", [b"a b", b"u:p@a", b"a/b", b"a, b", b"a:b", b"caf\xe9", b"[::1"])
def test_an_invalid_host_value_gets_400_and_never_reaches_the_app(server, host):
    data, closed = exchange(server, b"GET /fields HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    responses = parse_all(data)
    assert [r.status for r in responses] == [400] and closed, data


@pytest.mark.parametrize("host", ["", "example.com:8080", "127.0.0.1", "[::1]:80"])
def test_a_valid_or_empty_host_reaches_the_app(server, host):
    raw = f"GET /fields HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    assert fields(server, raw)["HTTP_HOST"] == host


def test_an_absolute_form_target_authority_replaces_the_host_header(server):
    seen = fields(server, b"GET http://other:99/fields HTTP/1.1\r\nHost: a:1\r\n\r\n")
    assert seen["HTTP_HOST"] == "other:99" and seen["PATH_INFO"] == "/fields", seen
    plain = fields(server, b"GET /fields HTTP/1.1\r\nHost: a:1\r\n\r\n")
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == (plain["SERVER_NAME"], plain["SERVER_PORT"])
    http10 = fields(server, b"GET https://h10/fields HTTP/1.0\r\n\r\n")
    assert http10["HTTP_HOST"] == "h10", http10


@pytest.mark.parametrize("target", [b"ftp://a/f", b"ws://a/", b"http://u:p@a/"])
def test_an_absolute_form_target_other_than_http_or_https_gets_400(server, target):
    data, closed = exchange(server, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.status for r in parse_all(data)] == [400] and closed, data


def test_a_non_ascii_root_path_gives_script_name_as_utf8_bytes_decoded_as_latin1(serve):
    mounted = serve("rfc_app:application", "--root-path", "/café")
    seen = fields(mounted, b"GET /caf%C3%A9/fields HTTP/1.1\r\nHost: t\r\n\r\n")
    latin1 = "/café".encode().decode("latin-1")
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == (latin1, "/fields"), seen


def test_every_response_gets_an_access_log_line_refused_or_cut_short(serve, tmp_path):
    log = tmp_path / "access.log"
    logged = serve("rfc_app:application", "--access-log", str(log))
    exchange(logged, b"G@T / HTTP/1.1\r\n")
    exchange(logged, TLS_CLIENT_HELLO_START)
    exchange(logged, b"GET /fields HTTP/1.1\r\nHost: a b\r\n\r\n")
    data, closed = exchange(logged, get("/fail-mid-stream"))
    assert closed and data.startswith(b"HTTP/1.1 200"), data
    expected = ['"G@T / HTTP/1.1" 400', '"-" 400', '"GET /fields HTTP/1.1" 400',
                '"GET /fail-mid-stream HTTP/1.1" 200']

    def lines():
        return log.exists() and [l for l in log.read_text().splitlines() if l]

    got = wait_for(lambda: len(lines() or []) >= len(expected) and lines(), 5, message="four log lines")
    assert [line.split(" - - [", 1)[1].split("] ", 1)[1].rsplit(" ", 3)[0] for line in got] == expected, got


def test_a_request_whose_client_left_before_its_body_ended_gets_an_access_log_line(serve, tmp_path):
    # Bug: a client that closed the connection in the middle of its request body left no
    # line in the access log.
    log = tmp_path / "access.log"
    logged = serve("rfc_app:application", "--access-log", str(log))
    with Conn(logged) as c:
        c.send(b"POST /fields HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
    wait_for(lambda: log.exists() and '"POST /fields HTTP/1.1" 400' in log.read_text(), 5,
             message="the access log line")  # fmt: skip


def test_a_response_finished_after_a_stop_signal_came_during_the_app_call_says_close(serve):
    server = serve("signals_app:application")
    with Conn(server) as c:
        c.send(get("/sleep?secs=1") + get("/after"))
        wait_for(lambda: server.state_file("in-flight").exists(), 5, message="the app to start")
        server.signal(signal.SIGTERM)
        r = c.read_response(timeout=5)
        assert (r.status, r.body) == (200, b"slept"), r
        assert (r.header("Connection") or "").lower() == "close", r.raw_head
        assert c.closed_within(3)
    assert server.wait_exit(5) == 0, server.stderr()


def test_hop_by_hop_headers_set_by_the_app_are_all_left_out(serve):
    # Bug: Connection, Keep-Alive and Transfer-Encoding from the app were left out, but
    # Upgrade, TE, Trailer and Proxy-Connection went to the client (PEP 3333 forbids all
    # of them to an app; RFC 9110 7.6.1).
    server = serve("rfc_app:application")
    r = request(server, get("/hop-by-hop"))
    assert (r.status, r.body) == (200, b"ok"), r
    for name in ("Upgrade", "TE", "Trailer", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding"):
        assert not r.has(name), (name, r.raw_head)
    assert r.header("X-Kept") == "yes" and r.header("Content-Length") == "2", r.raw_head
