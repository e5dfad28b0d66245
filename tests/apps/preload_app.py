"""Reports where it was imported and who serves it: used to check --preload's forked instances."""

import atexit
import gc
import json
import os

IMPORTED_BY = os.getpid()
STATE = os.environ.get("EVSERVE_TEST_STATE", "")


def _at_exit():
    if STATE:
        with open(os.path.join(STATE, f"atexit-{os.getpid()}"), "w") as f:
            f.write("atexit ran\n")


atexit.register(_at_exit)


def application(environ, start_response):
    body = json.dumps({
        "imported_by": IMPORTED_BY,
        "served_by": os.getpid(),
        "frozen": gc.get_freeze_count(),
        "multiprocess": environ["wsgi.multiprocess"],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
