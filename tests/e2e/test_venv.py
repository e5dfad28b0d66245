"""Virtualenvs: evserve runs in the Python it is installed in, so the app imports from that
venv (its own and its launcher's instances alike), even under an empty environment and
whatever $VIRTUAL_ENV says; --venv is gone and refused as an unknown flag."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import base_python, evserve_venv, free_port, is_listening, request, run_evserve

CLEAN_PATH = "PATH=/usr/bin:/bin"
UNDER_ENV_I = ("env", "-i", CLEAN_PATH)


def same_path(a, b):
    return a is not None and Path(a).resolve() == Path(b).resolve()


@pytest.fixture(scope="session")
def marker_venv(tmp_path_factory):
    """Another venv, holding a package the installed evserve must not see."""
    venv = tmp_path_factory.mktemp("marker") / "venv"
    subprocess.run([base_python(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120,
                   capture_output=True)
    (site,) = list(venv.glob("lib/python3.*/site-packages"))
    (site / "evserve_venv_marker").mkdir()
    (site / "evserve_venv_marker" / "__init__.py").write_text("VALUE = 'from the marker venv'\n")
    return venv


def test_the_instance_sees_the_venv_it_is_installed_in_under_env_i(serve):
    server = serve("venv_probe:application", argv_prefix=UNDER_ENV_I, env={})
    seen = server.get_json("/")
    assert same_path(seen["prefix"], evserve_venv()), seen
    assert seen["flask"] and seen["flask"].startswith(str(evserve_venv())), seen


def test_launcher_instances_run_in_the_launchers_venv_under_env_i(serve):
    server = serve("venv_probe:application", "--workers", "2", argv_prefix=UNDER_ENV_I, env={})
    seen = server.get_json("/")
    assert same_path(seen["prefix"], evserve_venv()), seen
    assert seen["flask"] and seen["flask"].startswith(str(evserve_venv())), seen


def test_virtual_env_of_another_venv_is_ignored(serve, marker_venv):
    # VIRTUAL_ENV used to choose the app's packages; the installed package now decides.
    server = serve("venv_probe:application",
                   argv_prefix=(*UNDER_ENV_I, f"VIRTUAL_ENV={marker_venv}"), env={})
    seen = server.get_json("/")
    assert same_path(seen["prefix"], evserve_venv()), seen
    assert seen["marker"] is None, f"the marker venv leaked in: {seen['marker']}"


def test_venv_flag_is_refused_as_an_unknown_flag(tmp_path):
    port = free_port()
    done = run_evserve("--venv", str(tmp_path), "--port", str(port), "venv_probe:application")
    assert done.returncode == 2, done.stderr
    assert "unexpected argument '--venv'" in done.stderr, done.stderr
    assert not is_listening(port)


def test_flask_app_from_the_installed_venv_runs_under_an_empty_environment(serve):
    server = serve("flask_app:app", argv_prefix=UNDER_ENV_I, env={})
    seen = server.get_json("/where")
    assert seen["flask_file"].startswith(str(evserve_venv())), seen
    body = json.dumps({"n": 1}).encode()
    r = request(server, b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert r.status == 200 and r.json()["received"] == {"n": 1}
