"""PEP 3333 rules an app can lean on: start_response's exc_info handling, write(), lazy
start_response, invalid status/headers, and close() of the response iterable. Every close()
is appended to $EVSERVE_TEST_STATE/close.log as "<id> <how>" so tests can wait for it."""

import os
import sys
from urllib.parse import parse_qs

from closing import RecordsClose

STATE = os.environ.get("EVSERVE_TEST_STATE", "/tmp")
CHUNK = b"x" * 65536


def _failing_chunks():
    yield b"first"
    raise RuntimeError("boom in iteration")


def _big_chunks():
    for _ in range(1600):  # 100 MiB
        yield CHUNK


def exc_before(environ, start_response):
    start_response("200 OK", [("X-First", "yes")])
    try:
        raise ValueError("handled before any byte")
    except ValueError:
        start_response("500 Replaced", [("X-Second", "yes"), ("Content-Length", "8")], sys.exc_info())
    return [b"replaced"]


def exc_after(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk"
    try:
        raise ValueError("after headers")
    except ValueError:
        try:
            start_response("500 Too Late", [], sys.exc_info())
        except ValueError:
            with open(os.path.join(STATE, "reraised.log"), "a") as f:
                f.write("start_response re-raised the ValueError\n")
            raise
    yield b"never"


def double_start(environ, start_response):
    start_response("200 OK", [])
    start_response("201 Created", [])
    return [b"should not be sent"]


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    write(b"abc")
    write(b"def")
    return [b"ghi"]


def lazy(environ, start_response):
    yield from ()  # makes this a generator: nothing runs until the first next()
    start_response("200 OK", [("X-Lazy", "yes")])
    yield b"lazy-one"
    yield b"lazy-two"


def latin1_header(environ, start_response):
    start_response("200 OK", [("X-Name", "caf\u00e9"), ("Content-Length", "2")])
    return [b"ok"]


def bad(status, headers):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"MUST-NOT-APPEAR"]

    return app


def str_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["MUST-NOT-APPEAR as str"]


def no_start_response(environ, start_response):
    return [b"MUST-NOT-APPEAR without start_response"]


ROUTES = {
    "/str_body": str_body,
    "/no_start_response": no_start_response,
    "/exc_before": exc_before,
    "/exc_after": exc_after,
    "/double_start": double_start,
    "/write": write_callable,
    "/lazy": lazy,
    "/bad_status_no_reason": bad("200", []),
    "/bad_status_text": bad("OK 200", []),
    "/bad_status_crlf": bad("200 OK\r\nInjected: yes", []),
    "/bad_header_name": bad("200 OK", [("Bad Name", "x")]),
    "/bad_header_colon": bad("200 OK", [("Bad:Name", "x")]),
    "/bad_header_value": bad("200 OK", [("X-Ok", "a\r\nInjected: yes")]),
    "/bad_header_type": bad("200 OK", [("X-Ok", 5)]),
    "/bad_header_not_latin1": bad("200 OK", [("X-Price", "5 \u20ac")]),
    "/latin1_header": latin1_header,
}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/close":
        query = parse_qs(environ["QUERY_STRING"])
        ident, mode = query["id"][0], query["mode"][0]
        chunks = {"ok": [b"fine"], "slow": [b"fine"], "raise": _failing_chunks(), "big": _big_chunks()}[mode]
        headers = [("Content-Length", str(100 * 1024 * 1024))] if mode == "big" else []
        start_response("200 OK", headers)
        return RecordsClose(ident, chunks, close_delay=1.0 if mode == "slow" else 0.0)
    return ROUTES[path](environ, start_response)
