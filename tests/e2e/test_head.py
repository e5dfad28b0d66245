"""HEAD responses: their framing headers are the app's own or none. A framework answers HEAD
with an empty body, so a Content-Length the server computed from it would contradict the
GET response."""

import pytest

from conftest import Conn, get


@pytest.fixture(scope="module")
def flask_server(module_serve):
    return module_serve("flask_app:app")


@pytest.fixture(scope="module")
def plain_server(module_serve):
    return module_serve("http_app:application")


def get_then_head(server, path):
    """GET `path`, HEAD `path` and a GET after it on one connection."""
    with Conn(server) as c:
        c.send(get(path) + f"HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode() + get("/after"))
        got = c.read_response()
        head = c.read_response("HEAD")
        after = c.read_response()
    assert head.status == 200 and after.complete, (head, after)
    return got, head


def test_head_on_a_flask_streamed_route_has_no_computed_content_length(flask_server):
    got, head = get_then_head(flask_server, "/stream")
    assert got.framing == "chunked" and got.body.startswith(b"line 0\n"), got
    assert not head.has("Content-Length"), head.raw_head


def test_head_never_carries_a_content_length_computed_from_the_body(plain_server):
    got, head = get_then_head(plain_server, "/head-empty")
    assert got.header("Content-Length") == "11000" and len(got.body) == 11000, got
    assert not head.has("Content-Length"), head.raw_head
    assert not head.has("Transfer-Encoding"), head.raw_head


def test_head_passes_on_the_content_length_the_app_set(plain_server):
    got, head = get_then_head(plain_server, "/some-path")
    assert got.body == b"path=/some-path"
    assert head.all("Content-Length") == [str(len(got.body))], head.raw_head
