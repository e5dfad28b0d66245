"""The app every backend host runs in the multi-host harness.

Each response says which host and which code version served it and the client address the
app saw (REMOTE_ADDR). Each POST appends its X-Request-Id to a file of its own process in
EVSERVE_MH_STATE before it answers, so the harness can count what the app received and find
a POST that reached the app twice.
"""

import os
import time

import version

HOST = os.environ.get("EVSERVE_MH_HOST", "?")
STATE = os.environ.get("EVSERVE_MH_STATE", ".")


def _record_post(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    request_id = environ.get("HTTP_X_REQUEST_ID", "-")
    fd = os.open(os.path.join(STATE, f"posts-{os.getpid()}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, request_id.encode() + b"\n")
    finally:
        os.close(fd)
    # ?hold=SECONDS: the POST stays in flight after it is recorded, so a host that dies or
    # loses its link has POSTs that reached the app but were not answered yet.
    hold = environ.get("QUERY_STRING", "").partition("hold=")[2]
    if hold:
        time.sleep(min(float(hold), 1.0))


def application(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        _record_post(environ)
    body = b"ok\n"
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Host", HOST),
            ("X-Version", version.VERSION),
            ("X-Remote-Addr", environ.get("REMOTE_ADDR", "")),
        ],
    )
    return [body]
