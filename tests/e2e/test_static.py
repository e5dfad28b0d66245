"""--static URL_PREFIX=DIR without nginx: the instance answers files under the prefix
itself, never calling the app (tests/apps/static_app.py logs every call it gets).

One real evserve per module serves a directory holding text, binary and large files,
symlinks that stay inside and symlinks that lead out, a subdirectory and a FIFO; the
tests talk to it over raw sockets and http.client."""

import hashlib
import http.client
import os
import socket
import time

import pytest

from conftest import Conn, get, parse_all, request, wait_for

CSS = b"body { color: #123456; }\n"
DATA = bytes(i % 251 for i in range(1000))
BIG_SIZE = 32 << 20
SECRET = b"the secret outside the static directory\n"


def big_byte(i):
    return (i * 7) % 256


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("static-tree")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = base / "static"
    root.mkdir()
    (root / "style.css").write_bytes(CSS)
    (root / "data.bin").write_bytes(DATA)
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    (root / "empty.txt").write_bytes(b"")
    (root / "sub").mkdir()
    (root / "sub" / "inner.txt").write_bytes(b"inner\n")
    (root / "sub" / "to_style.css").symlink_to("../style.css")
    (root / "out_absolute.txt").symlink_to(outside / "secret.txt")
    (root / "out_relative.txt").symlink_to("../outside/secret.txt")
    (root / "out_dir").symlink_to(outside)
    os.mkfifo(root / "fifo")
    with open(root / "big.bin", "wb") as f:
        block = bytes(big_byte(i) for i in range(1 << 20))
        for _ in range(BIG_SIZE >> 20):
            f.write(block)
    return root


@pytest.fixture(scope="module")
def server(module_serve, tree):
    return module_serve(
        "static_app:application",
        "--static",
        f"/static/={tree}",
        "--static",
        f"/media/files={tree / 'sub'}",
        "--access-log",
        "-",
        "--write-timeout",
        "30",
    )


def app_calls(server):
    return server.state_text("calls.log").splitlines()


@pytest.fixture
def no_app_calls(server):
    """Fails the test if the app was called during it."""
    before = len(app_calls(server))
    yield
    assert app_calls(server)[before:] == [], "the app was called"


def fetch(server, path, headers=(), method="GET"):
    extra = "".join(h + "\r\n" for h in headers)
    raw = f"{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()
    return request(server, raw, method)


def client(server):
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def test_a_file_under_the_prefix_is_served_without_calling_the_app(server, no_app_calls):
    c = client(server)
    c.request("GET", "/static/style.css")
    r = c.getresponse()
    assert r.status == 200
    assert r.read() == CSS
    assert r.getheader("Content-Type") == "text/css; charset=utf-8"
    assert r.getheader("Content-Length") == str(len(CSS))
    assert r.getheader("Accept-Ranges") == "bytes"
    assert r.getheader("ETag", "").startswith('"')
    assert r.getheader("Last-Modified", "").endswith(" GMT")
    assert r.getheader("Date")
    c.close()


def test_paths_outside_every_prefix_still_reach_the_app(server):
    before = len(app_calls(server))
    for path in ("/", "/static", "/staticfiles/style.css"):
        r = fetch(server, path)
        assert (r.status, r.body) == (200, f"app:{path}".encode())
    assert app_calls(server)[before:] == ["/", "/static", "/staticfiles/style.css"]


def test_a_query_string_is_not_part_of_the_file_name(server, no_app_calls):
    r = fetch(server, "/static/style.css?v=3&x=%2e%2e")
    assert (r.status, r.body) == (200, CSS)


def test_a_second_mount_with_its_own_prefix_is_served(server, no_app_calls):
    r = fetch(server, "/media/files/inner.txt")
    assert (r.status, r.body) == (200, b"inner\n")


def test_the_content_type_comes_from_the_extension(server, no_app_calls):
    assert fetch(server, "/static/logo.png").header("Content-Type") == "image/png"
    assert fetch(server, "/static/data.bin").header("Content-Type") == "application/octet-stream"
    assert fetch(server, "/static/empty.txt").header("Content-Type") == "text/plain; charset=utf-8"


def test_an_empty_file_is_200_with_content_length_zero(server, no_app_calls):
    r = fetch(server, "/static/empty.txt")
    assert (r.status, r.header("Content-Length"), r.body) == (200, "0", b"")


def test_head_has_the_headers_and_no_body(server, no_app_calls):
    with Conn(server) as c:
        c.send(get("/static/style.css").replace(b"GET", b"HEAD", 1) + get("/static/data.bin"))
        head = c.read_response("HEAD")
        assert head.status == 200
        assert head.header("Content-Length") == str(len(CSS))
        assert head.header("Content-Type") == "text/css; charset=utf-8"
        assert head.body == b""
        # The next response starts right after the head: no body bytes came between.
        following = c.read_response()
        assert (following.status, following.body) == (200, DATA)


def test_http10_gets_the_file_then_the_connection_closes_unless_kept_alive(server, no_app_calls):
    with Conn(server) as c:
        c.send(b"GET /static/style.css HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body, r.header("Connection")) == (200, CSS, "close")
        assert c.closed_within(5)
    with Conn(server) as c:
        c.send(b"GET /static/style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        first, second = c.read_response(), c.read_response()
        assert first.header("Connection") == "keep-alive"
        assert (first.body, second.body) == (CSS, CSS)


def test_a_post_is_405_with_allow_and_never_reaches_the_app(server, no_app_calls):
    raw = b"POST /static/style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
    r = request(server, raw)
    assert r.status == 405
    assert r.header("Allow") == "GET, HEAD"
    for method in ("PUT", "DELETE", "OPTIONS"):
        assert fetch(server, "/static/style.css", method=method).status == 405


def etag_and_date(server):
    r = fetch(server, "/static/style.css")
    return r.header("ETag"), r.header("Last-Modified")


def test_if_none_match_with_the_current_etag_is_304(server, no_app_calls):
    etag, _ = etag_and_date(server)
    r = fetch(server, "/static/style.css", [f'If-None-Match: "nope", {etag}'])
    assert r.status == 304
    assert r.header("ETag") == etag
    assert r.body == b""


def test_if_none_match_compares_weakly(server, no_app_calls):
    etag, _ = etag_and_date(server)
    assert fetch(server, "/static/style.css", [f"If-None-Match: W/{etag}"]).status == 304


def test_if_modified_since_the_last_modification_is_304(server, no_app_calls):
    _, last_modified = etag_and_date(server)
    r = fetch(server, "/static/style.css", [f"If-Modified-Since: {last_modified}"])
    assert r.status == 304
    old = fetch(server, "/static/style.css", ["If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT"])
    assert (old.status, old.body) == (200, CSS)


def test_if_none_match_takes_precedence_over_if_modified_since(server, no_app_calls):
    _, last_modified = etag_and_date(server)
    r = fetch(
        server,
        "/static/style.css",
        ['If-None-Match: "another"', f"If-Modified-Since: {last_modified}"],
    )
    assert (r.status, r.body) == (200, CSS)


def test_a_304_keeps_the_connection_for_the_next_request(server, no_app_calls):
    etag, _ = etag_and_date(server)
    with Conn(server) as c:
        c.send(get("/static/style.css", extra=f"If-None-Match: {etag}\r\n") + get("/static/data.bin"))
        assert c.read_response().status == 304
        assert c.read_response().body == DATA


def test_a_closed_range_is_206_with_content_range(server, no_app_calls):
    r = fetch(server, "/static/data.bin", ["Range: bytes=10-19"])
    assert r.status == 206
    assert r.header("Content-Range") == "bytes 10-19/1000"
    assert r.body == DATA[10:20]


def test_an_open_range_runs_to_the_end(server, no_app_calls):
    r = fetch(server, "/static/data.bin", ["Range: bytes=990-"])
    assert (r.status, r.header("Content-Range"), r.body) == (206, "bytes 990-999/1000", DATA[990:])


def test_a_suffix_range_is_the_last_bytes(server, no_app_calls):
    r = fetch(server, "/static/data.bin", ["Range: bytes=-7"])
    assert (r.status, r.header("Content-Range"), r.body) == (206, "bytes 993-999/1000", DATA[-7:])


def test_a_range_past_the_end_is_416(server, no_app_calls):
    for value in ("bytes=1000-", "bytes=5000-6000", "bytes=-0"):
        r = fetch(server, "/static/data.bin", [f"Range: {value}"])
        assert r.status == 416, value
        assert r.header("Content-Range") == "bytes */1000"


def test_several_ranges_get_the_whole_file(server, no_app_calls):
    r = fetch(server, "/static/data.bin", ["Range: bytes=0-1,5-9"])
    assert (r.status, r.body) == (200, DATA)


def test_if_range_with_a_stale_validator_gets_the_whole_file(server, no_app_calls):
    etag, last_modified = etag_and_date(server)
    stale = fetch(server, "/static/style.css", ["Range: bytes=0-3", 'If-Range: "stale"'])
    assert (stale.status, stale.body) == (200, CSS)
    for current in (etag, last_modified):
        fresh = fetch(server, "/static/style.css", ["Range: bytes=0-3", f"If-Range: {current}"])
        assert (fresh.status, fresh.body) == (206, CSS[:4])


REFUSED = [
    "/static/../static_app.py",
    "/static/sub/../../outside/secret.txt",
    "/static/%2e%2e/outside/secret.txt",
    "/static/%2E%2e/outside/secret.txt",
    "/static/.%2e/outside/secret.txt",
    "/static/sub%2f..%2f..%2foutside%2fsecret.txt",
    "/static/..%5coutside%5csecret.txt",
    "/static/style.css%00.png",
    "/static/./style.css",
]


def assert_refused(server, path):
    r = fetch(server, path)
    assert r.status == 404, (path, r.status, r.body)
    assert SECRET not in r.body
    assert b"/" not in r.body, f"the answer names a path: {r.body!r}"
    return r


@pytest.mark.parametrize("path", REFUSED)
def test_a_dot_dot_or_encoded_traversal_is_refused_and_never_reaches_the_app(server, no_app_calls, path):
    assert_refused(server, path)


def test_an_encoded_dot_dot_is_refused_and_never_reaches_the_app(server, no_app_calls):
    assert_refused(server, "/static/%2e%2e/%2e%2e/etc/passwd")


def test_a_symlink_leading_out_of_the_static_dir_is_refused(server, no_app_calls):
    for path in ("/static/out_absolute.txt", "/static/out_relative.txt", "/static/out_dir/secret.txt"):
        assert_refused(server, path)


def test_a_symlink_staying_inside_the_static_dir_is_served(server, no_app_calls):
    assert fetch(server, "/static/sub/to_style.css").body == CSS


def test_a_directory_is_never_listed(server, no_app_calls):
    for path in ("/static/", "/static/sub", "/static/sub/", "/media/files/"):
        r = assert_refused(server, path)
        assert b"inner" not in r.body


def test_a_missing_file_is_404(server, no_app_calls):
    assert_refused(server, "/static/no-such-file.css")
    assert_refused(server, "/static/style.css/more")


def test_a_fifo_is_404_and_the_instance_does_not_block(server, no_app_calls):
    assert_refused(server, "/static/fifo")
    assert fetch(server, "/static/style.css").status == 200


def test_pipelined_static_and_app_requests_are_answered_in_order(server):
    before = len(app_calls(server))
    paths = ["/a", "/static/style.css", "/b", "/static/data.bin", "/static/nope", "/c"]
    with Conn(server) as c:
        c.send(b"".join(get(p) for p in paths))
        responses = [c.read_response() for _ in paths]
    bodies = [r.body for r in responses]
    assert bodies[0] == b"app:/a" and bodies[2] == b"app:/b" and bodies[5] == b"app:/c"
    assert (bodies[1], bodies[3], responses[4].status) == (CSS, DATA, 404)
    assert app_calls(server)[before:] == ["/a", "/b", "/c"]


def big_digest():
    digest = hashlib.sha256()
    block = bytes(big_byte(i) for i in range(1 << 20))
    for _ in range(BIG_SIZE >> 20):
        digest.update(block)
    return digest.hexdigest()


def small_buffer_socket(port):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def test_a_file_bigger_than_the_socket_buffer_reaches_a_slow_reader_whole(server, no_app_calls):
    rss_before = server.rss_kib()
    sock = small_buffer_socket(server.port)
    with Conn(server, timeout=60, sock=sock) as c:
        c.send(get("/static/big.bin") + get("/static/style.css"))
        head = c.read_until(b"\r\n\r\n", time.monotonic() + 30)
        assert b"Content-Length: %d\r\n" % BIG_SIZE in head
        digest = hashlib.sha256(c.buf)
        received, c.buf = len(c.buf), b""
        deadline = time.monotonic() + 120
        while received < BIG_SIZE:
            assert time.monotonic() < deadline, f"only {received} bytes arrived"
            piece = sock.recv(min(16 * 1024, BIG_SIZE - received))
            assert piece, f"closed after {received} bytes"
            digest.update(piece)
            received += len(piece)
            if received < (1 << 20):
                # A slow reader for the first MiB: the server must wait for it, not buffer.
                time.sleep(0.001)
        assert server.rss_kib() < rss_before + 16 * 1024, "the file was read into memory"
        assert digest.hexdigest() == big_digest()
        # Keep-alive goes on after the large body.
        assert c.read_response().body == CSS


def test_a_reader_that_stops_is_cut_off_by_the_write_timeout(serve, tree):
    srv = serve(
        "static_app:application", "--static", f"/static/={tree}", "--write-timeout", "1",
        "--access-log", "-",
    )
    with Conn(srv, timeout=20, sock=small_buffer_socket(srv.port)) as c:
        c.send(get("/static/big.bin"))
        # Nothing is read until the server gives up on this reader and logs the response.
        wait_for(lambda: '"GET /static/big.bin HTTP/1.1" 200' in srv.stdout(), 20,
                 message="the write timeout's access-log line")
        data, closed = c.read_to_close(time.monotonic() + 15)
        assert closed, "the connection stayed open past the write timeout"
        assert len(data) < BIG_SIZE


def test_every_static_answer_gets_an_access_log_line(server):
    fetch(server, "/static/data.bin", ["Range: bytes=0-9", "User-Agent: logcheck"])
    fetch(server, "/static/%2e%2e/x", ["User-Agent: logcheck"])
    fetch(server, "/static/style.css", ["User-Agent: logcheck"], method="DELETE")

    def lines():
        found = [line for line in server.stdout().splitlines() if '"logcheck"' in line]
        return found if len(found) >= 3 else None

    found = wait_for(lines, 10, message="three access-log lines")
    assert '"GET /static/data.bin HTTP/1.1" 206 10 ' in found[0]
    assert '"GET /static/%2e%2e/x HTTP/1.1" 404 ' in found[1]
    assert '"DELETE /static/style.css HTTP/1.1" 405 ' in found[2]


def test_the_root_path_is_taken_off_before_matching(serve, tree):
    srv = serve("static_app:application", "--root-path", "/app", "--static", f"/static/={tree}")
    assert fetch(srv, "/app/static/style.css").body == CSS
    assert fetch(srv, "/app/other").body == b"app:/other"


def test_a_changed_file_gets_a_new_etag(serve, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"one")
    srv = serve("static_app:application", "--static", f"/s/={tmp_path}")
    first = fetch(srv, "/s/f.txt")
    (tmp_path / "f.txt").write_bytes(b"two!")
    second = fetch(srv, "/s/f.txt")
    assert second.body == b"two!"
    assert second.header("ETag") != first.header("ETag")
    again = fetch(srv, "/s/f.txt", [f"If-None-Match: {first.header('ETag')}"])
    assert again.status == 200
