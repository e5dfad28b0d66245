"""Issue A, virtualenvs: the app imports from the venv named by $VIRTUAL_ENV or --venv (and
nothing from the base interpreter's or the test runner's site-packages); a venv made with
another Python version is refused naming both versions; a Flask app in its own venv runs
under an empty environment."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import APPS, base_python, evserve_bin, free_port, is_listening, request

PYTHON312 = "/root/.pyenv/versions/3.12.1/bin/python3.12"
CLEAN_PATH = "PATH=/usr/bin:/bin"
FLASK_PIN = next(
    line.strip() for line in (APPS.parent / "requirements.txt").read_text().splitlines()
    if line.lower().startswith("flask")
)


def make_venv(python, where, with_pip=False):
    args = [python, "-m", "venv", str(where)] + ([] if with_pip else ["--without-pip"])
    subprocess.run(args, check=True, timeout=120, capture_output=True)
    return where


def site_packages(venv):
    (found,) = list(Path(venv).glob("lib/python3.*/site-packages"))
    return found


@pytest.fixture(scope="session")
def marker_venv(tmp_path_factory):
    venv = make_venv(base_python(), tmp_path_factory.mktemp("marker") / "venv")
    pkg = site_packages(venv) / "evserve_venv_marker"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 'from the marker venv'\n")
    return venv


@pytest.fixture(scope="session")
def flask_venv(tmp_path_factory):
    venv = make_venv(base_python(), tmp_path_factory.mktemp("flaskvenv") / "venv", with_pip=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", FLASK_PIN],
                   check=True, timeout=300, capture_output=True)
    return venv


def under_env_i(venv):
    return ("env", "-i", CLEAN_PATH, f"VIRTUAL_ENV={venv}")


def test_virtual_env_variable_selects_the_venv_and_only_it(serve, marker_venv):
    server = serve("venv_probe:application", argv_prefix=under_env_i(marker_venv), env={})
    seen = server.get_json("/")
    assert seen["marker"] is not None and seen["marker"].startswith(str(marker_venv)), seen
    assert seen["prefix"] == str(marker_venv), seen
    assert seen["flask"] is None, f"flask leaked in from outside the venv: {seen['flask']}"
    assert seen["pytest"] is None, f"pytest leaked in from outside the venv: {seen['pytest']}"


def test_an_empty_virtual_env_variable_counts_as_unset(serve):
    # Bug: VIRTUAL_ENV= (set but empty) stopped evserve with "a value is required for
    # '--venv <DIR>'"; it now means no venv, like an unset variable.
    server = serve("venv_probe:application", argv_prefix=("env", "-i", CLEAN_PATH, "VIRTUAL_ENV="),
                   env={})
    seen = server.get_json("/")
    assert seen["prefix"] == seen["base_prefix"] and seen["marker"] is None, seen


def test_venv_flag_selects_the_venv(serve, marker_venv):
    server = serve("venv_probe:application", "--venv", str(marker_venv),
                   argv_prefix=("env", "-i", CLEAN_PATH), env={})
    seen = server.get_json("/")
    assert seen["marker"] and seen["marker"].startswith(str(marker_venv)), seen
    assert seen["pytest"] is None, seen


def test_relative_venv_is_resolved_before_chdir(serve, marker_venv):
    # Bug: a relative --venv was looked up inside the --chdir directory.
    server = serve("venv_probe:application", "--venv", marker_venv.name, "--chdir", str(APPS),
                   cwd=marker_venv.parent, argv_prefix=("env", "-i", CLEAN_PATH), env={})
    seen = server.get_json("/")
    assert seen["marker"] and seen["marker"].startswith(str(marker_venv)), seen


def test_venv_of_another_python_version_is_refused_naming_both(tmp_path):
    if not os.path.exists(PYTHON312):
        pytest.skip("no Python 3.12 on this machine")
    venv = make_venv(PYTHON312, tmp_path / "venv312")
    port = free_port()
    done = subprocess.run(
        ["env", "-i", CLEAN_PATH, f"VIRTUAL_ENV={venv}", evserve_bin(), "--port", str(port),
         "venv_probe:application"],
        capture_output=True, text=True, timeout=20, cwd=str(APPS),
    )
    assert done.returncode != 0, done.stderr
    errors = [l for l in done.stderr.splitlines() if "evserve: error:" in l]
    assert len(errors) == 1, done.stderr
    assert "3.12" in errors[0] and "3.11" in errors[0], done.stderr
    assert not is_listening(port)


def test_flask_app_in_its_own_venv_runs_under_an_empty_environment(serve, flask_venv):
    server = serve("flask_app:app", argv_prefix=under_env_i(flask_venv), env={})
    seen = server.get_json("/where")
    assert seen["flask_file"].startswith(str(flask_venv)), seen
    body = json.dumps({"n": 1}).encode()
    r = request(server, b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert r.status == 200 and r.json()["received"] == {"n": 1}
