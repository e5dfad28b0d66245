"""App for the recycling and scaling tests.

GET /             -> "pid=<pid>"
GET /work?ms=N    -> keeps the CPU busy N milliseconds (a CPU-bound request), then "pid=<pid>"
GET /grow?mb=N    -> allocates N MiB and keeps it for the life of the process (a leak)
"""
import os
import time

_kept = []


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = dict(p.partition("=")[::2] for p in environ.get("QUERY_STRING", "").split("&") if p)
    if path == "/work":
        end = time.perf_counter() + min(float(query.get("ms") or "1"), 1000) / 1000
        while time.perf_counter() < end:
            pass
    elif path == "/grow":
        # Touched pages count toward the resident set.
        _kept.append(bytearray(b"x" * (min(int(query.get("mb") or "1"), 512) << 20)))
    body = f"pid={os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
