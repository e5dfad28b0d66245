"""App for the control console's end-to-end tests.

GET /          -> "pid=<pid> version=<VERSION> signals=<names received, comma-separated>"
GET /sleep?s=N -> sleeps N seconds inside the request, then answers as /; it first creates
                  the file $CONSOLE_TEST_MARK, if set (the request is in flight)

SIGUSR1 and SIGUSR2 are recorded (Python runs the handler on the next request), so a test
can tell which process a signal reached.
"""
import os
import signal
import time

VERSION = "v1"
RECEIVED = []


def _record(signum, frame):
    RECEIVED.append(signal.Signals(signum).name)


for _signal in (signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(_signal, _record)


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        if os.environ.get("CONSOLE_TEST_MARK"):
            open(os.environ["CONSOLE_TEST_MARK"], "w").close()
        seconds = float(environ.get("QUERY_STRING", "").partition("=")[2] or "1")
        time.sleep(min(seconds, 30))
    body = f"pid={os.getpid()} version={VERSION} signals={','.join(RECEIVED)}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
