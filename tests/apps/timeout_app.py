"""App for the --timeout tests: it records when each request starts.

GET /          -> "pid=<pid>"
GET /sleep?s=N -> writes "<time.time()>" (the request's start) to $TIMEOUT_TEST_MARKS/<pid>,
                  then sleeps N seconds (N=inf: forever) and answers "slept"
"""
import os
import time


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        started = time.time()
        marks = os.environ.get("TIMEOUT_TEST_MARKS")
        if marks:
            path = os.path.join(marks, str(os.getpid()))
            with open(path + ".new", "w") as f:
                f.write(repr(started))
            os.replace(path + ".new", path)
        seconds = float(environ.get("QUERY_STRING", "s=inf").partition("=")[2] or "inf")
        while time.time() - started < seconds:
            time.sleep(min(1.0, seconds - (time.time() - started)))
        body = b"slept"
    else:
        body = f"pid={os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
