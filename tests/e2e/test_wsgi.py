"""Issue A, WSGI (PEP 3333): the environ's keys and types, wsgi.input's methods, wsgi.errors,
start_response's exc_info rules, write(), lazy start_response, invalid status/headers, and
close() of the response iterable in every ending."""

import socket
import time

import pytest

from conftest import Conn, get, parse_all, request, wait_for


@pytest.fixture(scope="module")
def env_server(module_serve):
    return module_serve("environ_app:application")


@pytest.fixture(scope="module")
def rules_server(module_serve):
    return module_serve("wsgi_rules_app:application")


def environ_of(server, raw):
    with Conn(server) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 200, (r, server.stderr()[-2000:])
        env = r.json()
        env["_client_port"] = c.sock.getsockname()[1]
    return env


def value(env, key):
    return env[key][1]


def test_each_request_of_a_connection_sees_its_own_host(env_server):
    # A connection reuses the Host string of its previous request only when it is the same.
    with Conn(env_server) as c:
        hosts = []
        for host in (b"one.test", b"one.test", b"two.test"):
            c.send(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            r = c.read_response()
            assert r.status == 200, r
            hosts.append(value(r.json(), "HTTP_HOST"))
    assert hosts == ["one.test", "one.test", "two.test"]


def test_environ_has_every_required_key_with_the_right_type(env_server):
    body = b"a=1&b=2"
    env = environ_of(
        env_server,
        b"POST /some/path?x=%20y&z HTTP/1.1\r\nHost: example.test:8080\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n"
        b"X-Dup: one\r\nX-Dup: two\r\nUser-Agent: e2e\r\nAccept: a/b\r\nAccept: c/d\r\n\r\n" + body,
    )
    strings = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/some/path",
        "QUERY_STRING": "x=%20y&z",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": "7",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_X_DUP": "one, two",
        "HTTP_ACCEPT": "a/b, c/d",
        "HTTP_USER_AGENT": "e2e",
        "HTTP_HOST": "example.test:8080",
        "wsgi.url_scheme": "http",
    }
    for key, expected in strings.items():
        assert env[key] == ["str", expected], (key, env.get(key))
    assert env["SERVER_NAME"][0] == "str" and env["SERVER_NAME"][1]
    assert env["SERVER_PORT"][0] == "str" and env["SERVER_PORT"][1].isdigit()
    assert env["REMOTE_PORT"] == ["str", str(env["_client_port"])]
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["wsgi.version"] == ["tuple", [1, 0]]
    assert env["wsgi.multithread"] == ["bool", False]
    assert env["wsgi.multiprocess"][0] == "bool"
    assert env["wsgi.run_once"] == ["bool", False]
    assert env["wsgi.input_terminated"] == ["bool", True]
    assert env["wsgi.input"][0] not in ("NoneType", "str", "bytes")
    assert env["wsgi.errors"][0] not in ("NoneType", "str", "bytes")
    assert env["_key_types"] == ["str"]
    for key, described in env.items():
        if key.isupper() and not key.startswith("_"):
            assert described[0] == "str", f"{key} is a {described[0]}, CGI variables must be str"
    assert env["_body"] == "a=1&b=2"


def test_get_without_body_has_no_content_type_or_length_keys(env_server):
    env = environ_of(env_server, get("/plain"))
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        assert key not in env or env[key] == ["str", ""], env.get(key)


def test_path_info_is_percent_decoded_as_latin1(env_server):
    env = environ_of(env_server, get("/caf%C3%A9/a%2Fb?q=%C3%A9"))
    assert value(env, "PATH_INFO") == "/caf\u00c3\u00a9/a/b"
    assert value(env, "QUERY_STRING") == "q=%C3%A9"


def test_underscore_header_names_never_become_http_keys(env_server):
    r = request(env_server, b"GET / HTTP/1.1\r\nHost: t\r\nX_Auth_User: mallory\r\n\r\n")
    if r.status == 200:
        assert "HTTP_X_AUTH_USER" not in r.json()
    else:
        assert r.status == 400


def test_trailers_never_become_environ_keys(env_server):
    env = environ_of(
        env_server,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer-Evil: yes\r\n\r\n",
    )
    assert env["_body"] == "abc"
    assert "HTTP_X_TRAILER_EVIL" not in env
    assert "CONTENT_LENGTH" not in env or value(env, "CONTENT_LENGTH") in ("", "3")


INPUT = b"line1\nline2\nline3\n"


@pytest.mark.parametrize(
    "ops, expected",
    [
        ("read", ["line1\nline2\nline3\n"]),
        ("read5,read,read", ["line1", "\nline2\nline3\n", ""]),
        ("readline,readline,readline,readline", ["line1\n", "line2\n", "line3\n", ""]),
        ("readline3,readline", ["lin", "e1\n"]),
        ("readlines", [["line1\n", "line2\n", "line3\n"]]),
        ("iter", [["line1\n", "line2\n", "line3\n"]]),
        ("read100", ["line1\nline2\nline3\n"]),
    ],
)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_wsgi_input_methods(env_server, ops, expected, framing):
    if framing == "length":
        raw = b"POST /?op=%s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (ops.encode(), len(INPUT), INPUT)
    else:
        raw = (b"POST /?op=%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"7\r\nline1\nl\r\nb\r\nine2\nline3\n\r\n0\r\n\r\n" % ops.encode())
    assert environ_of(env_server, raw)["_input"] == expected


def test_wsgi_errors_writes_reach_the_server_log(env_server):
    environ_of(env_server, get("/?errors=E2E-ERRORS-MARKER-42"))
    wait_for(lambda: "E2E-ERRORS-MARKER-42" in env_server.stderr(), 5, message="wsgi.errors text in stderr")


def test_exc_info_before_output_replaces_status_and_headers(rules_server):
    r = request(rules_server, get("/exc_before"))
    assert (r.status, r.body) == (500, b"replaced")
    assert r.has("X-Second") and not r.has("X-First")


def test_exc_info_after_output_reraises_and_cuts_the_response(rules_server):
    with Conn(rules_server) as c:
        c.send(get("/exc_after"))
        r = c.read_response()
    assert r.status == 200 and r.body.startswith(b"first chunk")
    assert not r.complete, "a failed response must not end with the final 0 chunk"
    wait_for(lambda: "re-raised" in rules_server.state_text("reraised.log"), 5,
             message="start_response to re-raise the exc_info exception")


def test_second_start_response_without_exc_info_is_an_error(rules_server):
    r = request(rules_server, get("/double_start"))
    assert r.status == 500 and b"should not be sent" not in r.body


def test_write_callable_output_comes_before_the_iterable(rules_server):
    # Twice on one connection: the second request reuses start_response and write().
    with Conn(rules_server) as c:
        c.send(get("/write") + get("/write", extra="Connection: close\r\n"))
        data, _ = c.read_to_close(time.monotonic() + 5)
    assert [(r.status, r.body) for r in parse_all(data)] == [(200, b"abcdefghi")] * 2, data


def test_a_latin1_header_value_goes_out_as_its_bytes(rules_server):
    with Conn(rules_server) as c:
        c.send(get("/latin1_header", extra="Connection: close\r\n"))
        data, _ = c.read_to_close(time.monotonic() + 5)
    assert b"\r\nX-Name: caf\xe9\r\n" in data, data


def test_lazy_start_response_in_a_generator(rules_server):
    r = request(rules_server, get("/lazy"))
    assert (r.status, r.body, r.header("X-Lazy")) == (200, b"lazy-onelazy-two", "yes")


@pytest.mark.parametrize("path", ["/bad_status_no_reason", "/bad_status_text", "/bad_status_crlf",
                                  "/bad_header_name", "/bad_header_colon", "/bad_header_value",
                                  "/bad_header_type", "/bad_header_not_latin1", "/str_body",
                                  "/no_start_response"])
def test_invalid_status_header_or_body_gives_500_not_a_broken_response(rules_server, path):
    with Conn(rules_server) as c:
        c.send(get(path) + get("/write", extra="Connection: close\r\n"))
        data, _ = c.read_to_close(time.monotonic() + 2)
    assert b"MUST-NOT-APPEAR" not in data and b"Injected" not in data, data
    responses = parse_all(data)
    assert responses and responses[0].status == 500, data


def closes(server):
    return server.state_text("close.log").split("\n")


@pytest.mark.parametrize("mode", ["ok", "raise"])
def test_close_is_called_on_the_response_iterable(rules_server, mode):
    ident = f"{mode}-{time.monotonic_ns()}"
    with Conn(rules_server) as c:
        c.send(get(f"/close?id={ident}&mode={mode}"))
        c.read_response()
    wait_for(lambda: f"{ident} closed" in closes(rules_server), 5, message="close() to be called")


def test_a_closing_connection_ends_before_a_slow_close_returns(rules_server):
    # The last piece of a Connection: close answer is held back to travel with the FIN,
    # and the socket closes before the app's close() runs: a close() that takes a second
    # must not keep the client waiting for the end of its answer.
    ident = f"slow-{time.monotonic_ns()}"
    with Conn(rules_server) as c:
        start = time.monotonic()
        c.send(get(f"/close?id={ident}&mode=slow", extra="Connection: close\r\n"))
        data, closed = c.read_to_close(start + 5)
        took = time.monotonic() - start
    assert closed and took < 0.5, f"closed={closed} after {took:.2f}s"
    responses = parse_all(data)
    assert len(responses) == 1 and responses[0].body == b"fine", data
    wait_for(lambda: f"{ident} closed" in closes(rules_server), 5, message="close() to be called")


def test_close_is_called_when_the_client_disconnects_mid_response(rules_server):
    ident = f"gone-{time.monotonic_ns()}"
    c = Conn(rules_server)
    c.send(get(f"/close?id={ident}&mode=big"))
    c.read_exact(100_000, time.monotonic() + 5)
    c.close()
    wait_for(lambda: f"{ident} closed" in closes(rules_server), 10, message="close() after the client left")
    assert request(rules_server, get("/write")).status == 200


def test_request_head_arriving_byte_by_byte_is_parsed(env_server):
    raw = b"GET /bytes?x=1 HTTP/1.1\r\nHost: t\r\nX-Split: yes\r\n\r\n"
    with Conn(env_server) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(raw)):
            c.send(raw[i:i + 1])
        env = c.read_response().json()
    assert (value(env, "PATH_INFO"), value(env, "QUERY_STRING"), value(env, "HTTP_X_SPLIT")) == ("/bytes", "x=1", "yes")


def test_header_values_are_stripped_of_surrounding_whitespace(env_server):
    env = environ_of(env_server, b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: \t  padded value \t \r\n\r\n")
    assert value(env, "HTTP_X_PAD") == "padded value"


def test_identical_content_lengths_reach_the_app_as_one_plain_value(env_server):
    env = environ_of(
        env_server,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    assert value(env, "CONTENT_LENGTH") == "5"


def test_a_higher_http_1_minor_version_reaches_the_app_as_http_1_1(env_server):
    env = environ_of(env_server, b"GET / HTTP/1.3\r\nHost: t\r\n\r\n")
    assert value(env, "SERVER_PROTOCOL") == "HTTP/1.1"


def test_each_request_sees_its_own_method_query_protocol_and_input_not_the_defaults(env_server):
    # GET, an empty query, HTTP/1.1 and the empty wsgi.input come with every environ from
    # the start; a request that differs must replace each one, and the next must not see it.
    requests = [
        (b"PATCH /a?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
         ("PATCH", "x=1", "HTTP/1.1", "abc")),
        (b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n", ("GET", "", "HTTP/1.1", "")),
        (b"BREW /c?pot=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", ("BREW", "pot=1", "HTTP/1.0", "")),
        (b"GET /d HTTP/1.1\r\nHost: t\r\n\r\n", ("GET", "", "HTTP/1.1", "")),
    ]
    with Conn(env_server) as c:
        for raw, expected in requests:
            c.send(raw)
            r = c.read_response()
            assert r.status == 200, (r, env_server.stderr()[-2000:])
            env = r.json()
            keys = ("REQUEST_METHOD", "QUERY_STRING", "SERVER_PROTOCOL")
            seen = tuple(value(env, k) for k in keys) + (env["_body"],)
            assert seen == expected, raw
