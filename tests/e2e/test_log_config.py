"""--log-config: a dictConfig JSON file or a fileConfig ini file configures Python logging
in the launcher and in each instance; evserve's messages go to "evserve.error", access
lines to "evserve.access" with the access fields on the record; a bad file is one line of
error and a non-zero exit."""

import json
import os
import signal
import socket
import subprocess

import pytest
from conftest import APPS, evserve_bin, free_port, run_evserve, server_env, wait_for

APP = "access_log_app:application"


def dict_config(tmp_path):
    def handler(name):
        return {"class": "logging.FileHandler", "filename": str(tmp_path / name),
                "formatter": "json"}

    config = {
        "version": 1,
        "formatters": {"json": {"()": "json_log_formatter.JsonFormatter"}},
        "handlers": {"access": handler("access.jsonl"), "error": handler("error.jsonl")},
        "loggers": {
            "evserve.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
            "evserve.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
        },
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    return path


def env():
    return server_env({"PYTHONPATH": str(APPS)})


def records(path, at_least, what):
    def ready():
        if not path.exists():
            return None
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines] if len(lines) >= at_least else None

    return wait_for(ready, 15, message=what)


def get(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        while s.recv(65536):
            pass


def test_a_dict_config_gets_the_messages_and_the_access_fields_on_the_records(serve, tmp_path):
    server = serve(APP, "--log-config", str(dict_config(tmp_path)), env=env())
    get(server.port, b'GET /x?y=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: ua"1\r\n'
                     b"X-Request-ID: r-9\r\nConnection: close\r\n\r\n")
    get(server.port, b"GET /missing HTTP/1.0\r\n\r\n")
    first, second = records(tmp_path / "access.jsonl", 2, "two access records")
    assert first["logger"] == "evserve.access" and first["level"] == "INFO"
    assert (first["method"], first["path"], first["query"], first["status"]) == ("GET", "/x", "y=1", 200)
    assert (first["user_agent"], first["request_id"], first["bytes"]) == ('ua"1', "r-9", 6)
    assert first["message"].startswith('127.0.0.1 - - [') and '"GET /x?y=1 HTTP/1.1" 200 6' in first["message"]
    assert (second["status"], second["protocol"], second["request_id"]) == (404, "HTTP/1.0", None)
    errors = records(tmp_path / "error.jsonl", 1, "the error log")
    assert any(r["logger"] == "evserve.error" and "Listening at" in r["message"] for r in errors)
    assert "Listening at" not in server.stderr()


@pytest.mark.parametrize("preload", [(), ("--preload",)], ids=["imported", "preloaded"])
def test_a_launcher_and_its_instances_log_through_the_config(serve, tmp_path, preload):
    server = serve(APP, "--workers", "2", *preload, "--log-config", str(dict_config(tmp_path)),
                   env=env())
    error_log = tmp_path / "error.jsonl"

    def instances_ready():
        lines = records(error_log, 1, "the error log")
        return any("ready: 2 instances" in r["message"] for r in lines)

    wait_for(instances_ready, 20, message="two instances logging through the config")
    pids = {r["pid"] for r in records(error_log, 1, "the error log")}
    assert server.pid in pids and len(pids) >= 3
    get(server.port, b"GET /w HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    (access,) = records(tmp_path / "access.jsonl", 1, "an access record")
    assert access["path"] == "/w" and access["pid"] != server.pid
    # Rotation: the handlers' files are reopened in the launcher and the instances.
    os.rename(error_log, tmp_path / "error.jsonl.1")
    server.signal(signal.SIGUSR1)
    reopened = lambda: [r for r in records(error_log, 1, "a new error log") if "reopen" in r["message"]]
    wait_for(lambda: len({r["pid"] for r in reopened()}) >= 3, 15, message="three processes reopening")


def test_serve_with_workers_from_python_logs_through_the_config(tmp_path):
    port = free_port()
    script = tmp_path / "run.py"
    script.write_text(
        "import evserve\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
        f"evserve.serve(app, port={port}, workers=2, log_config={str(dict_config(tmp_path))!r})\n"
    )
    python = os.path.join(os.path.dirname(evserve_bin()), "python")
    proc = subprocess.Popen([python, str(script)], env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        error_log = tmp_path / "error.jsonl"
        wait_for(lambda: any("ready: 2 instances" in r["message"]
                             for r in records(error_log, 1, "the error log")), 20,
                 message="the launcher's ready message in the configured log")
        get(port, b"GET /api HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        (access,) = records(tmp_path / "access.jsonl", 1, "an access record")
        assert access["path"] == "/api" and access["pid"] != proc.pid
        assert proc.pid in {r["pid"] for r in records(error_log, 1, "the error log")}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_a_file_config_ini_works_too(serve, tmp_path):
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    ini = tmp_path / "logging.ini"
    ini.write_text(f"""
[loggers]
keys=root,access,error

[handlers]
keys=access,error

[formatters]
keys=access,plain

[logger_root]
level=WARNING
handlers=

[logger_access]
level=INFO
handlers=access
propagate=0
qualname=evserve.access

[logger_error]
level=INFO
handlers=error
propagate=0
qualname=evserve.error

[handler_access]
class=FileHandler
formatter=access
args=({str(access)!r}, 'a')

[handler_error]
class=FileHandler
formatter=plain
args=({str(error)!r}, 'a')

[formatter_access]
format=ACCESS %(method)s %(path)s %(status)s %(bytes)s

[formatter_plain]
format=%(name)s %(levelname)s %(message)s
""")
    server = serve(APP, "--log-config", str(ini))
    get(server.port, b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
    wait_for(lambda: access.exists() and access.read_text() == "ACCESS POST /e 201 3\n", 15,
             message="the access line")
    assert "evserve.error INFO Listening at" in error.read_text()


def test_a_bad_log_config_is_one_line_of_error(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}')
    not_json = tmp_path / "broken.json"
    not_json.write_text("{nope")
    bad_ini = tmp_path / "bad.ini"
    bad_ini.write_text("this is not an ini file\n")
    for path in [tmp_path / "missing.json", bad_json, not_json, bad_ini]:
        for mode in [(), ("--workers", "2")]:
            r = run_evserve(*mode, "--port", "1", "--log-config", str(path), APP)
            lines = r.stderr.strip().splitlines()
            assert r.returncode != 0, r.stderr
            assert len(lines) == 1 and "--log-config" in lines[0] and str(path) in lines[0], r.stderr
