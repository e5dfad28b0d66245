"""The framework floor: an app's CPU per request with no server at all.

    python floor.py APP_NAME [SECONDS]

Calls the callable APP_NAME of apps.py in a loop with a canned environ (a fresh copy
per call, a start_response that keeps the status and headers, the body iterated and
close() called, as a server does) and prints one JSON line: {"app", "calls", "us_per_call"}.
A server's overhead is its CPU per request minus this figure.
"""

import io
import json
import sys
import time

import apps


def canned_environ(method, path, body):
    return {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "CONTENT_TYPE": "application/octet-stream" if body else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def one_call(app, template, body):
    environ = dict(template)
    environ["wsgi.input"] = io.BytesIO(body or b"")
    seen = []

    def start_response(status, headers, exc_info=None):
        seen.append((status, headers))
        return seen.append

    result = app(environ, start_response)
    try:
        out = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return seen, out


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit("usage: floor.py APP_NAME [SECONDS]")
    name = argv[1]
    seconds = float(argv[2]) if len(argv) == 3 else 3.0
    app = getattr(apps, name)
    method, path, body, want = apps.expected(name)
    template = canned_environ(method, path, body)
    _, out = one_call(app, template, body)
    if out != want:
        sys.exit("floor.py: %s answered %r, not the expected body" % (name, out[:80]))
    for _ in range(200):  # warm caches and lazy imports
        one_call(app, template, body)
    calls, start = 0, time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(100):
            one_call(app, template, body)
        calls += 100
    used = time.process_time() - start
    print(json.dumps({"app": name, "calls": calls, "us_per_call": used * 1e6 / calls}))


if __name__ == "__main__":
    main(sys.argv)
