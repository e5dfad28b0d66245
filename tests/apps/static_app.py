"""The app behind --static tests: answers `app:PATH_INFO` and appends each PATH_INFO it
is called with to $EVSERVE_TEST_STATE/calls.log, so a test can prove a request never
reached it."""

import os


def application(environ, start_response):
    path = environ["PATH_INFO"]
    state = os.environ.get("EVSERVE_TEST_STATE")
    if state:
        with open(os.path.join(state, "calls.log"), "a") as f:
            f.write(path + "\n")
    body = f"app:{path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
