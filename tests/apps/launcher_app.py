"""App for the launcher's end-to-end tests.

GET /          -> "pid=<pid> version=<VERSION>" (the reload test rewrites VERSION in a copy)
GET /sleep?s=N -> sleeps N seconds inside the request (a stuck request); with &mark=1 it
                  first creates a file in $LAUNCHER_TEST_MARKS (the request is in flight)
GET /crash     -> the process exits at once (a crashing app)
"""
import os
import time

VERSION = "v1"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/crash":
        os._exit(3)
    if path == "/sleep":
        query = dict(p.partition("=")[::2] for p in environ.get("QUERY_STRING", "").split("&"))
        if query.get("mark") and os.environ.get("LAUNCHER_TEST_MARKS"):
            open(os.path.join(os.environ["LAUNCHER_TEST_MARKS"], str(os.getpid())), "w").close()
        seconds = float(query.get("s") or "60")
        time.sleep(min(seconds, 120))
    body = f"pid={os.getpid()} version={VERSION}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
