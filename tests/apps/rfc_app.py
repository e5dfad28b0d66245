"""Responses that test the HTTP rules the server enforces on what an app sends, and a report
of the request fields the server derives (Host, SCRIPT_NAME, PATH_INFO).

/status?s=TEXT        answers with status line TEXT
/204-with-length      a 204 with the app's own Content-Length and Transfer-Encoding
/fail-mid-stream      a 200 whose iterable raises after its first chunk
/hop-by-hop           a 200 that sets hop-by-hop headers (which the server leaves out)
/fields               JSON: HTTP_HOST, SERVER_NAME, SERVER_PORT, SCRIPT_NAME, PATH_INFO
"""

import json
from urllib.parse import parse_qs

FIELDS = ("HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO")


def _fail_after_first_chunk():
    yield b"first chunk\n"
    raise RuntimeError("failed mid-stream")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/status":
        status = parse_qs(environ["QUERY_STRING"])["s"][0]
        start_response(status, [("Content-Type", "text/plain")])
        return [b"body"]
    if path == "/204-with-length":
        start_response("204 No Content", [("Content-Length", "5"), ("Transfer-Encoding", "chunked")])
        return [b"hello"]
    if path == "/hop-by-hop":
        headers = [("Upgrade", "h2c"), ("TE", "trailers"), ("Trailer", "X-Sum"),
                   ("Proxy-Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
                   ("Transfer-Encoding", "chunked"), ("X-Kept", "yes"), ("Content-Length", "2")]
        start_response("200 OK", headers)
        return [b"ok"]
    if path == "/fail-mid-stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _fail_after_first_chunk()
    body = json.dumps({key: environ.get(key) for key in FIELDS}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
