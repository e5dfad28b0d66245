"""Machinery for the package smoke tests: fresh venvs with evserve installed by pip, and
real server processes started from them.

- `installed(version)` (session fixture `venv_for`): a fresh venv of that pyenv Python with
  `pip install <repo> pyramid` done once per test session.
- `Running`: one server process (argv, env, cwd), stopped by SIGTERM at the end; `wait_ready`
  polls the port with a deadline, `get` does one HTTP GET.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYENV = Path("/root/.pyenv/versions")
READY_TIMEOUT = 30.0
INSTALL_TIMEOUT = 900


def python_for(version):
    """The pyenv interpreter for "3.10", or python3.10 on PATH; None when there is none."""
    found = sorted(PYENV.glob(f"{version}.*/bin/python{version}"))
    if found:
        return str(found[-1])
    return shutil.which(f"python{version}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    """Our environment without venv or buffering settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONUNBUFFERED")}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def venv_for(tmp_path_factory):
    made = {}

    def installed(version):
        if version not in made:
            python = python_for(version)
            if python is None:
                pytest.skip(f"no Python {version} on this machine")
            venv = tmp_path_factory.mktemp(f"py{version}") / "venv"
            subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", str(REPO), "pyramid"],
                           check=True, timeout=INSTALL_TIMEOUT, env=clean_env())
            made[version] = venv
        return made[version]

    return installed


class Running:
    """A server process; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, argv, port, workdir, env=None, cwd=None):
        self.port = port
        self.out_path = Path(workdir) / f"out-{port}.log"
        self.err_path = Path(workdir) / f"err-{port}.log"
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(self.out_path, "wb"),
                                     stderr=open(self.err_path, "wb"), env=env or clean_env(),
                                     cwd=str(cwd or REPO), start_new_session=True)

    def output(self):
        return self.out_path.read_text(errors="replace"), self.err_path.read_text(errors="replace")

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode} before listening: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"not listening on {self.port} after {timeout}s: {self.output()}")

    def get(self, path="/"):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            raise AssertionError(f"did not stop within {timeout}s after SIGTERM: {self.output()}")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def run(tmp_path):
    started = []

    def start(argv, port, env=None, cwd=None):
        server = Running(argv, port, tmp_path, env=env, cwd=cwd)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
