"""The package on the oldest and newest supported Python (3.10, 3.13): `pip install .` into a
fresh venv, then the console script (one instance and a launcher), `evserve.serve()` from
Python, `pserve` with a PasteDeploy ini and `paste.deploy.loadserver` each serve real
requests and stop with exit code 0; `--preload` serves the new code after a rolling reload;
PasteDeploy with `workers` forks its instances from the app object; bad options get the
command line's messages."""

import os
import re
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import REPO, clean_env, free_port

# The oldest and newest supported Python; EVSERVE_TEST_PYTHONS="3.10 3.11 3.12 3.13" checks
# every one.
VERSIONS = os.environ.get("EVSERVE_TEST_PYTHONS", "3.10 3.13").split()
HELLO = b"Hello, World!\n"


def cargo_version():
    return re.search(r'^version = "([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)


def write_paste_app(where):
    (where / "paste_hello.py").write_text(textwrap.dedent("""\
        def app_factory(global_conf, **local_conf):
            def application(environ, start_response):
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"Hello from paste\\n"]
            return application
    """))


def write_ini(where, port, **server):
    options = "".join(f"{key} = {value}\n" for key, value in {"port": port, **server}.items())
    ini = where / "app.ini"
    ini.write_text(f"[app:main]\npaste.app_factory = paste_hello:app_factory\n\n"
                   f"[server:main]\nuse = egg:evserve#main\nhost = 127.0.0.1\n{options}")
    return ini


@pytest.mark.parametrize("version", VERSIONS)
def test_console_script_serves_and_reports_the_cargo_version(venv_for, run, version):
    venv = venv_for(version)
    done = subprocess.run([str(venv / "bin" / "evserve"), "--version"], capture_output=True, text=True,
                          timeout=30, env=clean_env())
    assert done.stdout.strip() == f"evserve {cargo_version()}", done
    port = free_port()
    server = run([str(venv / "bin" / "evserve"), "--port", str(port), "--chdir", "examples",
                  "hello:application"], port).wait_ready()
    assert server.get() == (200, HELLO)
    assert server.stop() == 0, server.output()


@pytest.mark.parametrize("version", VERSIONS)
def test_launcher_starts_its_instances_with_the_venvs_python(venv_for, run, version):
    venv = venv_for(version)
    port = free_port()
    server = run([str(venv / "bin" / "evserve"), "--workers", "2", "--port", str(port),
                  "--chdir", "examples", "hello:application"], port).wait_ready()
    assert server.get() == (200, HELLO)
    launcher = server.proc.pid
    # The launcher says "ready" once every instance is.
    deadline = time.monotonic() + 30
    while "] ready: " not in server.output()[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    instances = open(f"/proc/{launcher}/task/{launcher}/children").read().split()
    assert len(instances) == 2, server.output()
    python = os.path.realpath(venv / "bin" / "python")
    for pid in instances:
        # The interpreter is the venv's; the title says what the process is.
        assert os.readlink(f"/proc/{pid}/exe") == python
        title = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[0]
        assert re.match(r"evserve: instance \d hello:application :\d+$", title), title
    assert server.stop() == 0, server.output()


@pytest.mark.parametrize("version", VERSIONS)
def test_serve_from_python_returns_and_python_finalizes(venv_for, run, version):
    venv = venv_for(version)
    port = free_port()
    code = textwrap.dedent(f"""\
        import atexit, evserve
        from hello import application
        atexit.register(print, "atexit ran")
        result = evserve.serve(application, port={port}, max_body_size="10M", access_log="-")
        print("serve returned", result)
    """)
    # PYTHONUNBUFFERED is unset: the output is lost unless Python finalizes normally.
    server = run([str(venv / "bin" / "python"), "-c", code], port, cwd=REPO / "examples").wait_ready()
    assert server.get("/x") == (200, HELLO)
    assert server.stop() == 0, server.output()
    out, err = server.output()
    assert "serve returned None" in out and "atexit ran" in out, (out, err)
    assert '"GET /x HTTP/1.1" 200' in out, out
    assert "KeyboardInterrupt" not in err


@pytest.mark.parametrize("version", VERSIONS)
def test_serve_options_are_checked_with_the_command_lines_messages(venv_for, version):
    python = str(venv_for(version) / "bin" / "python")
    code = textwrap.dedent("""\
        import evserve
        app = lambda environ, start_response: []
        for options in ({"max_body_size": "ten"}, {"port": "http"}, {"max_connections": 0},
                        {"no_such_flag": 1}, {"workers": 1000}):
            try:
                evserve.serve(app, **options)
            except (TypeError, ValueError) as e:
                print(type(e).__name__, e)
    """)
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30,
                          env=clean_env(), cwd=str(REPO))
    lines = done.stdout.splitlines()
    assert len(lines) == 5, done
    assert lines[0] == "ValueError --max-body-size: 'ten' is not a size (examples: 4096, 512K, 10M, 1G)"
    assert lines[1].startswith("ValueError invalid value 'http' for '--port <PORT>'"), lines[1]
    assert lines[2] == "ValueError --max-connections must be at least 1"
    assert lines[3] == "TypeError serve() got an unexpected keyword argument 'no_such_flag'"
    assert lines[4] == "ValueError --workers 1000 is too many: at most 256 instances per launcher", lines[4]


@pytest.mark.parametrize("version", VERSIONS)
def test_pserve_serves_an_ini_with_evserve_as_its_server(venv_for, run, tmp_path, version):
    venv = venv_for(version)
    write_paste_app(tmp_path)
    port = free_port()
    ini = write_ini(tmp_path, port, max_body_size="10M", access_log="-")
    server = run([str(venv / "bin" / "pserve"), str(ini)], port, cwd=tmp_path,
                 env=clean_env(PYTHONPATH=str(tmp_path))).wait_ready()
    assert server.get() == (200, b"Hello from paste\n")
    assert server.stop() == 0, server.output()


@pytest.mark.parametrize("version", VERSIONS)
def test_loadserver_runs_the_app_from_an_ini(venv_for, run, tmp_path, version):
    venv = venv_for(version)
    write_paste_app(tmp_path)
    port = free_port()
    ini = write_ini(tmp_path, port, pythonpath=f"{tmp_path} {tmp_path}")
    code = (f"from paste.deploy import loadapp, loadserver\n"
            f"loadserver('config:{ini}')(loadapp('config:{ini}'))\n")
    server = run([str(venv / "bin" / "python"), "-c", code], port, cwd=tmp_path,
                 env=clean_env(PYTHONPATH=str(tmp_path))).wait_ready()
    assert server.get() == (200, b"Hello from paste\n")
    assert server.stop() == 0, server.output()


def test_a_bad_ini_value_stops_pserve_with_the_command_lines_message(venv_for, tmp_path):
    venv = venv_for(VERSIONS[-1])
    write_paste_app(tmp_path)
    ini = write_ini(tmp_path, free_port(), max_body_size="lots", nginx="maybe")
    done = subprocess.run([str(venv / "bin" / "pserve"), str(ini)], capture_output=True, text=True,
                          timeout=60, cwd=str(tmp_path), env=clean_env(PYTHONPATH=str(tmp_path)))
    assert done.returncode != 0
    assert "ValueError: --nginx: 'maybe' is not true or false" in done.stderr, done.stderr
    ini = write_ini(tmp_path, free_port(), max_body_size="lots")
    done = subprocess.run([str(venv / "bin" / "pserve"), str(ini)], capture_output=True, text=True,
                          timeout=60, cwd=str(tmp_path), env=clean_env(PYTHONPATH=str(tmp_path)))
    assert done.returncode != 0
    assert "ValueError: --max-body-size: 'lots' is not a size" in done.stderr, done.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_preload_serves_the_new_code_after_a_rolling_reload(venv_for, run, tmp_path, version):
    venv = venv_for(version)
    app = tmp_path / "versioned.py"
    source = textwrap.dedent("""\
        VERSION = b"v1"
        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [VERSION]
    """)
    app.write_text(source)
    port = free_port()
    server = run([str(venv / "bin" / "evserve"), "--workers", "2", "--preload", "--port", str(port),
                  "--chdir", str(tmp_path), "versioned:application"], port).wait_ready()
    wait_log(server, "] ready: ")
    assert server.get() == (200, b"v1")
    app.write_text(source.replace('b"v1"', 'b"v2"'))
    server.proc.send_signal(signal.SIGHUP)
    wait_log(server, "reload: done")
    deadline = time.monotonic() + 10
    while server.get() != (200, b"v2") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.get() == (200, b"v2"), server.output()
    assert server.stop() == 0, server.output()


def test_pserve_with_workers_forks_the_instances_from_the_app(venv_for, run, tmp_path):
    venv = venv_for(VERSIONS[-1])
    write_paste_app(tmp_path)
    port = free_port()
    ini = write_ini(tmp_path, port, workers=2)
    server = run([str(venv / "bin" / "pserve"), str(ini)], port, cwd=tmp_path,
                 env=clean_env(PYTHONPATH=str(tmp_path))).wait_ready()
    wait_log(server, "] ready: 2 instances")
    assert server.get() == (200, b"Hello from paste\n")
    assert server.stop() == 0, server.output()


def wait_log(server, text, timeout=30):
    deadline = time.monotonic() + timeout
    while text not in server.output()[1]:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the log: {server.output()}")
        time.sleep(0.05)
