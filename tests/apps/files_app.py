"""Large and slow responses: wsgi.file_wrapper on a real file and on a BytesIO, a 100 MiB
stream whose close() is recorded in $EVSERVE_TEST_STATE/close.log, a slowly produced
stream (/trickle) and an upload counter."""

import io
import os
import time
from urllib.parse import parse_qs

from closing import RecordsClose

CHUNK = b"y" * 65536


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/file":
        name = query["path"][0]
        size = os.path.getsize(name)
        start_response("200 OK", [("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](open(name, "rb"), 65536)
    if path == "/bytesio":
        size = int(query["size"][0])
        data = bytes(i % 251 for i in range(size))
        start_response("200 OK", [("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 8192)
    if path == "/big":
        chunks = int(query.get("mb", ["100"])[0]) * 16
        start_response("200 OK", [("Content-Length", str(chunks * len(CHUNK)))])
        return RecordsClose(query.get("id", ["-"])[0], (CHUNK for _ in range(chunks)))
    if path == "/trickle":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _trickle(float(query["secs"][0]))
    if path == "/upload":
        length = 0
        stream = environ["wsgi.input"]
        while True:
            block = stream.read(65536)
            if not block:
                break
            length += len(block)
        body = str(length).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Length", "5")])
    return [b"hello"]


def _trickle(seconds):
    """A generator that takes its time: 50 ms of app work per chunk."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
        yield b"."
