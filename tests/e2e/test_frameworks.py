"""Issue A, real apps: a Flask app from the test venv (forms, JSON, cookies, multipart upload,
streaming) and an app wrapped in wsgiref.validate.validator, which must log no complaint."""

import hashlib
import json
import os

import pytest

from conftest import Conn, request


@pytest.fixture(scope="module")
def flask_server(module_serve):
    return module_serve("flask_app:app")


@pytest.fixture(scope="module")
def validated(module_serve):
    return module_serve("validated_app:application")


def post(server, path, body, content_type, extra=b""):
    return request(server, b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s"
                   % (path.encode(), content_type.encode(), len(body), extra, body))


def test_flask_form_post(flask_server):
    r = post(flask_server, "/form", b"name=Ada+Lovelace&lang=en%26fr", "application/x-www-form-urlencoded")
    assert r.status == 200 and r.json() == {"name": "Ada Lovelace", "lang": "en&fr"}


def test_flask_json_post(flask_server):
    r = post(flask_server, "/json", json.dumps({"a": [1, 2], "b": "é"}).encode(), "application/json")
    assert r.status == 200 and r.json()["received"] == {"a": [1, 2], "b": "é"}


def test_flask_cookies_round_trip(flask_server):
    with Conn(flask_server) as c:
        c.send(b"GET /cookie/set HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        cookie = r.header("Set-Cookie").split(";")[0]
        assert cookie == "flavour=oatmeal"
        c.send(b"GET /cookie/get HTTP/1.1\r\nHost: t\r\nCookie: %s\r\n\r\n" % cookie.encode())
        assert c.read_response().body == b"oatmeal"


def test_flask_multipart_upload(flask_server):
    data = os.urandom(200_000)
    boundary = "e2eBoundary7MA4YWxk"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi there\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    r = post(flask_server, "/upload", body, f"multipart/form-data; boundary={boundary}")
    assert r.status == 200
    assert r.json() == {"filename": "blob.bin", "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(), "note": "hi there"}


def test_flask_streamed_response(flask_server):
    r = request(flask_server, b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    assert r.status == 200 and r.complete and r.framing == "chunked"
    assert r.body == b"".join(f"line {i}\n".encode() for i in range(5))


def test_validator_app_sees_no_violation(validated):
    exchanges = [
        (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", "GET", b"validated hello"),
        (b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", "HEAD", b""),
        (b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody", "POST", b"body"),
        (b"POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nch\r\n3\r\nunk\r\n0\r\n\r\n",
         "POST", b"chunk"),
        (b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n", "GET", b"chunk0;chunk1;chunk2;chunk3;"),
        (b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n", "HEAD", b""),
        (b"GET /write HTTP/1.1\r\nHost: t\r\n\r\n", "GET", b"written;returned"),
    ]
    with Conn(validated) as c:
        for raw, method, body in exchanges:
            c.send(raw)
            r = c.read_response(method)
            assert (r.status, r.body) == (200, body), (raw, r)
    log = validated.stderr()
    for complaint in ("Warning", "AssertionError", "Traceback", "garbage collected"):
        assert complaint not in log, log
