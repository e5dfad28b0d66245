"""Routes for HTTP/1.1 protocol tests. Every PATH_INFO served is appended to
$EVSERVE_TEST_STATE/paths.log so tests can prove a request was (or was never) served.

/echo          the request body, with Content-Length
/stream?n=N    N chunks "part0".."partN-1" without Content-Length
/status?code=C status C with a body that must never reach the wire
/head-empty    11,000 bytes without Content-Length for GET, an empty body for HEAD (as
               frameworks do)
anything else  "path=<PATH_INFO>" with Content-Length"""

import os
from urllib.parse import parse_qs

STATE = os.environ.get("EVSERVE_TEST_STATE", "/tmp")
NEVER = b"MUST-NOT-APPEAR"


def _record(path):
    with open(os.path.join(STATE, "paths.log"), "a", encoding="latin-1") as f:
        f.write(path + "\n")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    _record(path)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body))), ("X-Method", environ["REQUEST_METHOD"])])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"part{i}".encode() for i in range(int(query.get("n", ["3"])[0])))
    if path == "/status":
        code = query["code"][0]
        start_response(f"{code} Whatever", [("Content-Type", "text/plain")])
        return [NEVER]
    if path == "/head-empty":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"x" * 11000]
    body = f"path={path}".encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
