"""--access-logformat and --access-log-json, end to end.

The format test runs real gunicorn and evserve on the same app, sends both the same
requests (query strings, quotes, backslashes and non-ASCII bytes in headers, Basic auth,
HEAD, a 404, a POST with a body) and compares the lines byte for byte, masking only what
legitimately differs between two servers (times, durations, pids). The JSON test sends
requests built to forge fields and checks each line is one JSON object with exactly the
expected keys.
"""

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

from conftest import APPS, evserve_bin, free_port, is_listening, run_evserve, wait_for

# Everything except the atoms that differ between two servers by nature.
COMPARED = (
    '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(m)s %(U)s ?%(q)s %(H)s '
    "%({x-custom}i)s %({X-CUSTOM}I)s %({content-type}o)s %({x-out}o)s %({path_info}e)s "
    "%({query_string}e)s %({http_x_custom}e)s %({raw_uri}e)s %(zz)s %(a(b)c)s 100%%"
)
VOLATILE = " | %(t)s %(T)s %(M)s %(D)s %(L)s %(p)s"
VOLATILE_SHAPE = re.compile(
    r" \| \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] (\d+) (\d+) (\d+) (\d+\.\d{6}) <\d+>$"
)

REQUESTS = [
    b"GET /search?q=a%20b&empty=&x=%22y%22 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b'GET /a"b?x="y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    b"GET /caf%C3%A9/%2F/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b'GET /h HTTP/1.1\r\nHost: t\r\nUser-Agent: ag"ent\\ \xe9\xff\tend\r\n'
    b'Referer: http://r/"q"\r\nX-Custom: one\r\nx-custom: t\xe9o "2"\r\nConnection: close\r\n\r\n',
    b"GET /auth HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\nConnection: close\r\n\r\n",
    b"GET /auth HTTP/1.1\r\nHost: t\r\nAuthorization: basic w6k6eA==\r\nConnection: close\r\n\r\n",
    b"GET /auth HTTP/1.1\r\nHost: t\r\nAuthorization: Basic !!!\r\nConnection: close\r\n\r\n",
    b"GET /auth HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer YWxpY2U6c2VjcmV0\r\nConnection: close\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"POST /echo?id=7 HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"Connection: close\r\n\r\nhello world",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET http://t/abs?z=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
]


def send_all(port, requests):
    """Each request on its own connection, read to the close."""
    for raw in requests:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw)
            while s.recv(65536):
                pass


def lines_of(path, count, what):
    def ready():
        if not path.exists():
            return None
        lines = path.read_bytes().splitlines()
        return lines if len(lines) >= count else None

    return wait_for(ready, 15, message=f"{count} lines in the {what} access log")


def gunicorn_bin():
    return str(Path(evserve_bin()).parent / "gunicorn")


def run_gunicorn(tmp_path, log, fmt):
    port = free_port()
    proc = subprocess.Popen(
        [
            gunicorn_bin(), "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--chdir", str(APPS), "--access-logfile", str(log), "--access-logformat", fmt,
            "access_log_app:application",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "gunicorn.err", "wb"),
        start_new_session=True,
    )
    try:
        wait_for(lambda: proc.poll() is not None or is_listening(port), 20, message="gunicorn")
    except AssertionError:
        proc.kill()
        raise
    assert proc.poll() is None, (tmp_path / "gunicorn.err").read_text()
    return proc, port


def masked(line):
    """The compared part, after checking the volatile part has gunicorn's shape."""
    text = line.decode("utf-8")
    at = text.rindex(" | ")
    shape = VOLATILE_SHAPE.match(text[at:])
    assert shape, text
    secs, millis, micros, decimal = shape.groups()
    assert int(secs) == int(micros) // 1_000_000 and int(millis) == int(micros) // 1000
    assert decimal == f"{int(micros) // 1_000_000}.{int(micros) % 1_000_000:06d}"
    return line[: len(text[:at].encode("utf-8"))]


def test_the_format_atoms_render_byte_for_byte_as_gunicorn_writes_them(serve, tmp_path):
    fmt = COMPARED + VOLATILE
    gunicorn_log = tmp_path / "gunicorn.log"
    evserve_log = tmp_path / "evserve.log"
    proc, gport = run_gunicorn(tmp_path, gunicorn_log, fmt)
    try:
        send_all(gport, REQUESTS)
        theirs = lines_of(gunicorn_log, len(REQUESTS), "gunicorn")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    server = serve(
        "access_log_app:application", "--access-log", str(evserve_log), "--access-logformat", fmt
    )
    send_all(server.port, REQUESTS)
    ours = lines_of(evserve_log, len(REQUESTS), "evserve")
    assert len(ours) == len(theirs) == len(REQUESTS)
    for raw, mine, reference in zip(REQUESTS, ours, theirs):
        assert masked(mine) == masked(reference), (raw, mine, reference)


def test_a_percent_decoded_newline_cannot_start_a_line_of_its_own(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("access_log_app:application", "--access-log", str(log),
                   "--access-logformat", '%(U)s "%(r)s" %(s)s')
    send_all(server.port, [b"GET /a%0Ab%0D%00c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"])
    lines = lines_of(log, 1, "evserve")
    assert lines == [b'/a\\x0ab\\x0d\\x00c "GET /a%0Ab%0D%00c HTTP/1.1" 200']


def test_the_default_line_is_unchanged_without_a_format(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("access_log_app:application", "--access-log", str(log))
    send_all(server.port, [REQUESTS[3]])
    (line,) = lines_of(log, 1, "evserve")
    assert re.fullmatch(
        rb'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /h HTTP/1\.1" 200 6 '
        rb'"http://r/\\"q\\"" "ag\\"ent\\\\ \\xe9\\xff\\x09end"',
        line,
    ), line


def test_a_bad_format_is_one_line_of_error(tmp_path):
    for fmt, why in [("%(h)d", "only %(name)s"), ("50%", "literal % as %%"), ("%(h", "closing")]:
        r = run_evserve("--access-log", "-", "--access-logformat", fmt, "access_log_app:application",
                        cwd=APPS)
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "--access-logformat" in lines[0] and why in lines[0], r.stderr
    r = run_evserve("--access-log-json", "access_log_app:application", cwd=APPS)
    assert r.returncode != 0 and "--access-log" in r.stderr


FORGING = [
    b'GET /p"q\\r?a="b\\"c HTTP/1.1\r\nHost: t\r\nUser-Agent: x", "status": 999, "admin": true, "y": "\r\n'
    b"Referer: \\\\\\\"\t\xff\xfe\xc3\x28\r\nX-Request-ID: id-\xe9\r\nConnection: close\r\n\r\n",
    b"GET /%0A%22%00?q=%0A HTTP/1.1\r\nHost: t\r\nUser-Agent: }{\"\r\nConnection: close\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    b"HEAD /missing HTTP/1.0\r\n\r\n",
    b"BAD\x01 / HTTP/1.1\r\n\r\n",
]
JSON_KEYS = {
    "time", "remote_addr", "method", "path", "query", "protocol", "status", "bytes",
    "duration", "referer", "user_agent", "request_id",
}


def test_json_lines_have_exactly_their_keys_whatever_the_request_sends(serve, tmp_path):
    log = tmp_path / "access.jsonl"
    server = serve("access_log_app:application", "--access-log", str(log), "--access-log-json")
    send_all(server.port, FORGING)
    lines = lines_of(log, len(FORGING), "evserve")
    assert len(lines) == len(FORGING)
    records = [json.loads(line) for line in lines]
    for record in records:
        assert set(record) == JSON_KEYS, record
        assert record["remote_addr"] == "127.0.0.1"
        assert isinstance(record["duration"], float) and record["duration"] >= 0
    first, second, post, head, bad = records
    assert first["user_agent"] == 'x", "status": 999, "admin": true, "y": "'
    assert first["status"] == 200 and first["path"] == '/p"q\\r' and first["query"] == 'a="b\\"c'
    assert first["referer"] == '\\\\\\"\t\ufffd\ufffd\ufffd('
    assert first["request_id"] == "id-\ufffd"
    assert second["path"] == "/%0A%22%00" and second["user_agent"] == '}{"'
    assert (post["method"], post["status"], post["bytes"]) == ("POST", 201, 2)
    assert (head["protocol"], head["status"], head["bytes"], head["request_id"]) == (
        "HTTP/1.0", 404, 0, None)
    assert bad["status"] == 400 and bad["method"] is None and bad["path"] is None
