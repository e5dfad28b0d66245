"""App for the metrics tests: fixed-size bodies, so the test knows every byte it is sent.

GET /         -> "hello\n" (6 bytes)
POST /echo    -> the request body
GET /missing  -> 404 "missing\n" (8 bytes)
GET /slow     -> sleeps 50 ms, then "slow\n" (5 bytes)
"""
import time


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"missing\n"]
    if path == "/slow":
        time.sleep(0.05)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello\n"]
