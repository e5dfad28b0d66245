"""Proxy headers (--forwarded-allow-ips): from a trusted peer, X-Forwarded-For sets REMOTE_ADDR
and X-Forwarded-Proto sets wsgi.url_scheme; from any other peer they reach the app only as
HTTP_X_FORWARDED_* and change nothing. Behind the generated nginx, a client's own forged
X-Forwarded-For never becomes its address."""

import http.client
import json
import socket

import pytest

from conftest import APPS, Conn, get, run_evserve
from test_launcher import launcher_free_ports, launcher_nginx_args, launcher_start, needs_nginx  # noqa: F401

FORWARDED = "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"


def environ_from(server, extra, source=None):
    """The environ the app saw for one GET with `extra` header lines, sent from `source`."""
    if source is None:
        sock = server.connect()
    else:
        sock = socket.socket()
        sock.settimeout(5.0)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", server.port))
    with Conn(server, sock=sock) as c:
        c.send(get("/", extra=extra))
        r = c.read_response()
    assert r.status == 200, (r, server.stderr()[-2000:])
    return {k: v[1] for k, v in r.json().items() if isinstance(v, list) and len(v) == 2}


def test_a_trusted_peer_sets_remote_addr_and_scheme(serve):
    server = serve("environ_app:application")
    env = environ_from(server, FORWARDED)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 203.0.113.7"
    plain = environ_from(server, "")
    assert plain["REMOTE_ADDR"] == "127.0.0.1"
    assert plain["wsgi.url_scheme"] == "http"


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy(serve):
    server = serve("environ_app:application", "--forwarded-allow-ips", "127.0.0.1,10.0.0.9")
    env = environ_from(server, "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.0.0.9\r\n")
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    # Repeated fields count as one list.
    env = environ_from(server, "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 10.0.0.9\r\n")
    assert env["REMOTE_ADDR"] == "6.6.6.6"


def test_kept_proxy_values_follow_each_request_of_a_keep_alive_connection(serve):
    """A connection keeps its last Host and X-Forwarded-* values (and the client address
    found in X-Forwarded-For) to reuse them when the next request repeats them: a request
    that changes, repeats, joins or drops one must still see its own."""
    server = serve("environ_app:application")
    sends = [
        ("a.example", "203.0.113.7", "https"),
        ("a.example", "203.0.113.7", "https"),
        ("b.example", "198.51.100.2", "http"),
        ("b.example", "203.0.113.7", "https"),
        ("b.example", None, None),
        ("a.example", "203.0.113.7", "https"),
        ("a.example", "203.0.113.7\r\nX-Forwarded-For: 198.51.100.9", "https"),
        ("a.example", "203.0.113.7", "http"),
    ]
    with Conn(server) as c:
        for host, forwarded_for, proto in sends:
            extra = "X-Forwarded-Host: %s\r\n" % host
            if forwarded_for:
                extra += "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n" % (forwarded_for, proto)
            c.send(("GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (host, extra)).encode())
            r = c.read_response()
            assert r.status == 200, r
            env = {k: v[1] for k, v in r.json().items() if isinstance(v, list) and len(v) == 2}
            sent = (host, forwarded_for, proto)
            assert env["HTTP_HOST"] == host, sent
            assert env["HTTP_X_FORWARDED_HOST"] == host, sent
            if forwarded_for is None:
                assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http"), sent
                assert "HTTP_X_FORWARDED_FOR" not in env, sent
                continue
            # Two X-Forwarded-For fields are one list; the right-most untrusted is the client.
            client = forwarded_for.rsplit(" ", 1)[-1]
            assert env["REMOTE_ADDR"] == client, sent
            assert env["HTTP_X_FORWARDED_FOR"] == forwarded_for.replace("\r\nX-Forwarded-For: ", ", "), sent
            assert env["wsgi.url_scheme"] == proto, sent


@pytest.mark.parametrize(
    "allow, remote_addr, scheme",
    [
        ("127.0.0.1", "127.0.0.2", "http"),
        # `*` trusts the peer and every address in the list: the left-most is the client.
        ("*", "6.6.6.6", "https"),
    ],
    ids=["an_untrusted_peer_cannot_set_remote_addr_or_scheme", "a_star_trusts_every_peer"],
)
def test_only_a_trusted_peer_sets_remote_addr_and_scheme(serve, allow, remote_addr, scheme):
    server = serve("environ_app:application", "--forwarded-allow-ips", allow)
    env = environ_from(server, FORWARDED, source="127.0.0.2")
    assert env["REMOTE_ADDR"] == remote_addr
    assert env["wsgi.url_scheme"] == scheme
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 203.0.113.7"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"


def test_a_proto_other_than_http_or_https_is_ignored(serve):
    server = serve("environ_app:application")
    env = environ_from(server, "X-Forwarded-Proto: javascript\r\n")
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_PROTO"] == "javascript"
    env = environ_from(server, "X-Forwarded-For: not-an-address\r\n")
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_a_unix_socket_peer_is_always_trusted(serve, tmp_path):
    server = serve("environ_app:application", "--forwarded-allow-ips", "10.0.0.9", bind_unix=str(tmp_path / "s"))
    env = environ_from(server, FORWARDED)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"


def test_bad_forwarded_allow_ips_are_a_one_line_error():
    for value in ("10.0.0.300", "", "10.0.0.0/8", "127.0.0.1,*"):
        done = run_evserve("--forwarded-allow-ips", value, "environ_app:application")
        assert done.returncode != 0, value
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "--forwarded-allow-ips" in lines[0], (value, done.stderr)


@needs_nginx
def test_behind_nginx_a_forged_x_forwarded_for_is_not_the_clients_address(launcher_start, tmp_path):
    ports = launcher_free_ports(2)
    listen, backends = ports[0], ports[1:]
    args = launcher_nginx_args(tmp_path, backends, listen)
    p = launcher_start(*args, APPS / "environ_app.py:application")
    p.wait_ready()
    conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=10)
    try:
        conn.request("GET", "/", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, body
    env = json.loads(body)
    assert env["REMOTE_ADDR"][1] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_FOR"][1] == "127.0.0.1"
    assert env["wsgi.url_scheme"][1] == "http"
