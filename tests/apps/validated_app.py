"""A strictly PEP 3333-compliant app wrapped in wsgiref.validate.validator: any server-side
violation shows up as an AssertionError or a WSGIWarning in the server's log."""

from wsgiref.validate import validator


def _read_all(stream):
    parts = []
    while True:
        block = stream.read(8192)
        if not block:
            return b"".join(parts)
        parts.append(block)


def _inner(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/post":
        body = _read_all(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"chunk{i};".encode() for i in range(4))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return [b"returned"]
    body = b"validated hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = validator(_inner)
