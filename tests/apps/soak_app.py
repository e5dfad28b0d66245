"""A WSGI app for the soak, idle-connection and slow-client scripts in scripts/.

Each route exercises one part of the server's WSGI bridge, so a leak of a per-request
object on any path shows up as RSS growth under mixed load:

  /hello            plain text, one chunk
  /environ          reads every environ key and a few values
  /echo             POST: returns the request body (Content-Length request)
  /chunked-echo     POST: returns the request body (meant for chunked requests)
  /stream?n=&size=  a generator yielding n chunks of size bytes (close() counted)
  /file             wsgi.file_wrapper over a real file (sendfile path)
  /file-bytes       wsgi.file_wrapper over an in-memory file (read-in-blocks path)
  /error            raises before start_response: the server answers 500
  /write            the legacy write() callable, then an iterable
  /sleep?ms=        blocks the event loop for ms milliseconds (at most 5000)
  /stats            JSON counters: requests, streams opened and closed, allocated blocks
  anything else     404
"""

import io
import json
import os
import sys
import time
from urllib.parse import parse_qs

HELLO = b"Hello, soak!\n"
FILE_PATH = os.path.abspath(__file__)
FILE_BYTES = b"in-memory file body line\n" * 400

counters = {"requests": 0, "streams_opened": 0, "streams_closed": 0, "errors_raised": 0}
# One block per chunk size, reused: the response's size must not cost the app memory.
_blocks = {}


def _block(size):
    block = _blocks.get(size)
    if block is None:
        if len(_blocks) > 64:
            _blocks.clear()
        block = _blocks[size] = b"x" * size
    return block


class CountedStream:
    """A response iterable whose close() the server must call once per request."""

    def __init__(self, count, size):
        self.remaining = count
        self.block = _block(size)
        self.closed = False
        counters["streams_opened"] += 1

    def __iter__(self):
        return self

    def __next__(self):
        if self.remaining <= 0:
            raise StopIteration
        self.remaining -= 1
        return self.block

    def close(self):
        if not self.closed:
            self.closed = True
            counters["streams_closed"] += 1


def _read_body(environ):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        return stream.read(int(length))
    return stream.read()


def _int_param(query, name, default, limit):
    try:
        value = int(query.get(name, [default])[0])
    except ValueError:
        value = default
    return max(0, min(value, limit))


def application(environ, start_response):
    counters["requests"] += 1
    path = environ.get("PATH_INFO", "")
    text = [("Content-Type", "text/plain")]

    if path == "/hello":
        start_response("200 OK", text + [("Content-Length", str(len(HELLO)))])
        return [HELLO]

    if path == "/environ":
        names = sorted(k for k in environ if k.isupper())
        summary = "%s %s %s headers=%d\n" % (
            environ["REQUEST_METHOD"],
            environ.get("QUERY_STRING", ""),
            environ["SERVER_PROTOCOL"],
            sum(1 for k in names if k.startswith("HTTP_")),
        )
        body = (summary + ",".join(names) + "\n").encode()
        start_response("200 OK", text + [("Content-Length", str(len(body)))])
        return [body]

    if path in ("/echo", "/chunked-echo"):
        body = _read_body(environ)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    if path == "/stream":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        count = _int_param(query, "n", 8, 1 << 20)
        size = _int_param(query, "size", 4096, 1 << 20)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return CountedStream(count, size)

    if path == "/file":
        start_response("200 OK", text + [("Content-Length", str(os.path.getsize(FILE_PATH)))])
        return environ["wsgi.file_wrapper"](open(FILE_PATH, "rb"), 8192)

    if path == "/file-bytes":
        start_response("200 OK", text + [("Content-Length", str(len(FILE_BYTES)))])
        return environ["wsgi.file_wrapper"](io.BytesIO(FILE_BYTES), 4096)

    if path == "/error":
        counters["errors_raised"] += 1
        raise RuntimeError("soak_app: this route always fails")

    if path == "/write":
        write = start_response("200 OK", text + [("Content-Length", "12")])
        write(b"written ")
        return [b"iter"]

    if path == "/sleep":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(_int_param(query, "ms", 100, 5000) / 1000)
        start_response("200 OK", text + [("Content-Length", str(len(HELLO)))])
        return [HELLO]

    if path == "/stats":
        stats = dict(counters, allocated_blocks=sys.getallocatedblocks())
        body = json.dumps(stats).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    body = b"not found\n"
    start_response("404 Not Found", text + [("Content-Length", str(len(body)))])
    return [body]
