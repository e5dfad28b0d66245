"""Apps that fail: before any byte, after the headers, or by lying about Content-Length."""


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise_before":
        raise RuntimeError("app failed before start_response")
    if path == "/raise_after":
        return _raise_after(start_response)
    if path == "/short":
        start_response("200 OK", [("Content-Length", "10")])
        return [b"12345"]
    if path == "/long":
        start_response("200 OK", [("Content-Length", "10")])
        return [b"0123456789", b"EXTRA"]
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def _raise_after(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first"
    raise RuntimeError("app failed after the first chunk")
