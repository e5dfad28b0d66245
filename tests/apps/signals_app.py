"""Shutdown behaviour: slow requests in flight when SIGTERM/SIGINT arrives, and an atexit
handler that both prints (stdout, possibly block-buffered) and writes a file. Imports
subprocess, signal and asyncio on purpose: Ctrl-C must keep its graceful meaning anyway."""

import asyncio  # noqa: F401  (imported on purpose, see above)
import atexit
import os
import signal  # noqa: F401  (imported on purpose, see above)
import subprocess
import sys
import time
from urllib.parse import parse_qs

STATE = os.environ.get("EVSERVE_TEST_STATE", "/tmp")


def _at_exit():
    print("ATEXIT-PRINTED by signals_app")
    with open(os.path.join(STATE, "atexit.log"), "a") as f:
        f.write("atexit ran\n")


atexit.register(_at_exit)


def _mark(name):
    with open(os.path.join(STATE, name), "w") as f:
        f.write(str(time.time()))


def _drip(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
        yield b"."


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    seconds = float(query.get("secs", ["1"])[0])
    if path == "/sleep":
        _mark("in-flight")
        time.sleep(seconds)
        start_response("200 OK", [("Content-Length", "5")])
        return [b"slept"]
    if path == "/drip":
        _mark("in-flight")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _drip(seconds)
    if path == "/subprocess":
        _mark("in-flight")
        done = subprocess.run(["sleep", str(seconds)])
        body = f"child exit {done.returncode}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    sys.stdout.write("")
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
