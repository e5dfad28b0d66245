"""WSGI apps for the benchmark scenarios: plain stdlib apps, one Flask route and one
Django view.

Every server in a scenario serves the same callable from this module, so the
measured difference is the server's own cost. Each app's expected answer is
exposed through ``expected()`` so the harness can check the answer before and
after each load run.

    python3 bench/apps.py --calibrate   # time the token app, tune TOKEN_ROUNDS
"""

import hashlib
import hmac
import sys

try:
    import flask
except ImportError:  # the flask scenario is then listed under "Not run"
    flask = None

try:
    from django_site import DJANGO_BODY
    from django_site import application as django_view
except ImportError:  # the django scenarios are then listed under "Not run"
    DJANGO_BODY = b"Hello from Django!\n"

HELLO_BODY = b"Hello, World!\n"  # 14 bytes
BIG_BODY = b"0123456789abcdef" * 4096  # 64 KiB
ECHO_SIZE = 4096

# Chained HMAC-SHA256 signatures per token request; tuned to about 1 ms of CPU
# on the bench machine (see --calibrate).
FLASK_BODY = b"Hello from Flask!\n"

TOKEN_ROUNDS = 650
TOKEN_SECRET = b"evserve-bench-secret-key"
TOKEN_SALT = b"evserve-bench-salt"
TOKEN_CLAIMS = b'{"sub":"user-42","scope":"read write","exp":1893456000}'


def _respond(start_response, body, content_type=b"text/plain"):
    start_response(
        "200 OK",
        [
            ("Content-Type", content_type.decode("latin-1")),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def hello(environ, start_response):
    """14-byte answer, the smallest useful request."""
    return _respond(start_response, HELLO_BODY)


def big(environ, start_response):
    """64 KiB answer in one piece."""
    return _respond(start_response, BIG_BODY, b"application/octet-stream")


def echo(environ, start_response):
    """Sends the request body back, read as a framework would (by length)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    return _respond(start_response, body, b"application/octet-stream")


# Keys a typical framework request object touches while routing, building the
# request and choosing a response: about twenty lookups per request.
ENVIRON_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "HTTP_ACCEPT",
    "HTTP_ACCEPT_ENCODING",
    "HTTP_ACCEPT_LANGUAGE",
    "HTTP_COOKIE",
    "HTTP_AUTHORIZATION",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
)


def environ_app(environ, start_response):
    """Reads ~20 environ keys, like a framework building its request object."""
    seen = 0
    for key in ENVIRON_KEYS:
        if environ.get(key) is not None:
            seen += 1
    environ["wsgi.input"]  # frameworks wrap these two eagerly
    environ["wsgi.errors"]
    body = "{} {} {}\n".format(
        environ["REQUEST_METHOD"],
        environ.get("PATH_INFO", ""),
        environ.get("wsgi.url_scheme", ""),
    ).encode("latin-1")
    return _respond(start_response, body)


def _hkdf_sha256(ikm, salt, info, length):
    """HKDF (RFC 5869) extract-then-expand with HMAC-SHA256."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def make_token(rounds=TOKEN_ROUNDS):
    """Derives a signing key with HKDF, then signs the claims in a chain."""
    key = _hkdf_sha256(TOKEN_SECRET, TOKEN_SALT, b"token-signing", 32)
    sig = TOKEN_CLAIMS
    for _ in range(rounds):
        sig = hmac.new(key, sig + TOKEN_CLAIMS, hashlib.sha256).digest()
    return TOKEN_CLAIMS.hex().encode("ascii")[:32] + b"." + sig.hex().encode("ascii")


def token(environ, start_response):
    """CPU-bound request of about 1 ms: signs a token."""
    return _respond(start_response, make_token() + b"\n")


if flask is not None:
    flask_hello = flask.Flask(__name__)

    @flask_hello.route("/flask")
    def _flask_hello_route():
        """A real framework's routing, request and response objects around a short body."""
        return flask.Response(FLASK_BODY, mimetype="text/plain")


def expected(scenario_app):
    """(method, path, request body, expected response body) for an app name."""
    if scenario_app == "hello":
        return ("GET", "/", None, HELLO_BODY)
    if scenario_app == "big":
        return ("GET", "/big", None, BIG_BODY)
    if scenario_app == "echo":
        payload = bytes((i * 7 + 3) % 251 for i in range(ECHO_SIZE))
        return ("POST", "/echo", payload, payload)
    if scenario_app == "environ_app":
        return ("GET", "/environ", None, b"GET /environ http\n")
    if scenario_app == "token":
        return ("GET", "/token", None, make_token() + b"\n")
    if scenario_app == "flask_hello":
        return ("GET", "/flask", None, FLASK_BODY)
    if scenario_app == "django_view":
        return ("GET", "/django", None, DJANGO_BODY)
    raise KeyError(scenario_app)


def _calibrate():
    import time

    n = 400
    start = time.process_time()
    for _ in range(n):
        make_token()
    per = (time.process_time() - start) / n
    print(
        "TOKEN_ROUNDS={} -> {:.3f} ms per token; for 1 ms use about {}".format(
            TOKEN_ROUNDS, per * 1e3, int(TOKEN_ROUNDS / (per * 1e3))
        )
    )


if __name__ == "__main__":
    if "--calibrate" in sys.argv:
        _calibrate()
