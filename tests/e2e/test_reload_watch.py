"""End-to-end tests of `--reload`: a real launcher watching a real app's files through
inotify. Edits are made as editors make them (a new file renamed over the old one). Every
wait is on a condition with a deadline; all traffic is on 127.0.0.1.
"""
import os
import re
import time

import pytest

from conftest import free_port
from test_console import bodies_after_reload
from test_launcher import (
    LauncherLoad,
    launcher_free_ports,
    launcher_get,
    launcher_nginx_args,
    launcher_start,  # noqa: F401 (fixture)
    launcher_wait,
    needs_nginx,
)

APP = '''
import os
import greeting

try:
    with open(os.path.join(os.path.dirname(__file__), "templates", "page.html")) as f:
        PAGE = f.read().strip()
except OSError:
    PAGE = "-"


def app(environ, start_response):
    body = f"{greeting.WORDS} page={PAGE} pid={os.getpid()}\\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def save(path, text):
    """Writes `text` to `path` the way many editors save: a new file renamed over the old."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def make_project(tmp_path, words="hello v1"):
    project = tmp_path / "project"
    (project / "templates").mkdir(parents=True)
    (project / "app.py").write_text(APP)
    (project / "greeting.py").write_text(f"WORDS = {words!r}\n")
    (project / "templates" / "page.html").write_text("page-v1")
    return project


def start_watching(launcher_start, project, *flags, env=None):
    port = free_port()
    p = launcher_start("--reload", "--port", port, *flags, "app:app", cwd=project, env=env)
    p.wait_ready()
    p.wait_for(r"--reload: watching \d+ source files? of the app", 10)
    return p, port


def body(port):
    return launcher_get(port)[1]


def test_editing_an_imported_module_serves_new_code_within_a_second(launcher_start, tmp_path):
    project = make_project(tmp_path)
    # No --workers: --reload runs a launcher with one instance.
    p, port = start_watching(launcher_start, project)
    assert p.find(r"starting 1 instance of app:app")
    assert body(port).startswith("hello v1 ")
    saved_at = time.monotonic()
    save(project / "greeting.py", "WORDS = 'hello again v2'\n")
    when, _ = p.wait_for(r"--reload: .*greeting\.py changed", 5, after=saved_at)
    assert when - saved_at < 1.0, f"the reload began {when - saved_at:.2f}s after the save"
    launcher_wait(lambda: body(port).startswith("hello again v2 "), 10, "the new code served")
    print(f"--reload: new code served {time.monotonic() - saved_at:.2f}s after the save")
    assert len(p.output().split("greeting.py changed")) == 2, "one save, one reload"


def test_two_saves_of_the_same_size_within_a_second_serve_the_latest(launcher_start, tmp_path):
    # Bug: a .pyc cached by the first reload has the size and mtime second of the second
    # save, so Python trusted it and the first save's code was served again.
    project = make_project(tmp_path)
    # Python writes .pyc files unless told otherwise (empty is unset).
    p, port = start_watching(launcher_start, project, env={"PYTHONDONTWRITEBYTECODE": ""})
    source = project / "greeting.py"
    save(source, "WORDS = 'hello v2'\n")
    launcher_wait(lambda: body(port).startswith("hello v2 "), 10, "the first save served")
    first_mtime = source.stat().st_mtime_ns
    saved_at = time.monotonic()
    save(source, "WORDS = 'hello v3'\n")
    os.utime(source, ns=(first_mtime, first_mtime))
    p.wait_for(r"reload: done", 20, after=saved_at)
    launcher_wait(lambda: body(port).startswith("hello v3 "), 10, "the second save served")


@needs_nginx
def test_a_code_change_under_load_behind_nginx_fails_no_request(launcher_start, tmp_path):
    project = make_project(tmp_path)
    ports = launcher_free_ports(3)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(
        "--reload", *launcher_nginx_args(tmp_path, backends, listen), "app:app", cwd=project
    )
    p.wait_ready()
    p.wait_for(r"--reload: watching", 10)
    load = LauncherLoad(listen, threads=6, max_seconds=60)
    load.wait_for_requests(200)
    saved_at = time.monotonic()
    save(project / "greeting.py", "WORDS = 'hello under load v2'\n")
    p.wait_for(r"reload: done", 30, after=saved_at)
    late = bodies_after_reload(load, time.monotonic(), 100)
    assert all(b.startswith("hello under load v2 ") for b in late), late[:3]


@pytest.mark.parametrize("preload", [False, True], ids=["exec", "preload"])
def test_a_syntax_error_keeps_the_old_code_serving_and_is_logged_once(
    launcher_start, tmp_path, preload
):
    project = make_project(tmp_path)
    flags = ["--workers", "2"] + (["--preload"] if preload else [])
    p, port = start_watching(launcher_start, project, *flags)
    saved_at = time.monotonic()
    save(project / "greeting.py", "WORDS = 'broken\n")
    failed = r"reload not done" if preload else r"reload stopped at instance 0"
    p.wait_for(failed, 15, after=saved_at)
    for _ in range(10):
        assert body(port).startswith("hello v1 ")
    fixed_at = time.monotonic()
    save(project / "greeting.py", "WORDS = 'hello, fixed v3'\n")
    p.wait_for(r"reload: done", 20, after=fixed_at)
    launcher_wait(
        lambda: all(body(port).startswith("hello, fixed v3 ") for _ in range(10)), 10, "the fix"
    )
    # While the file was broken, its error was reported once, not retried in a loop.
    log = p.output()
    assert log.count("cannot import app") == 1, log
    assert len(re.findall(failed, log)) == 1, log


def test_reload_extra_file_globs_are_watched_and_others_are_not(launcher_start, tmp_path):
    project = make_project(tmp_path)
    p, port = start_watching(
        launcher_start, project, "--workers", "1", "--reload-extra-file", "templates/*.html"
    )
    assert "page=page-v1 " in body(port)
    # A file the pattern does not match changes nothing.
    ignored_at = time.monotonic()
    save(project / "templates" / "notes.txt", "not watched")
    save(project / "templates" / "page.html", "page, version 2")
    p.wait_for(r"--reload: .*page\.html changed", 5, after=ignored_at)
    launcher_wait(lambda: "page=page, version 2 " in body(port), 10, "the new page served")
    assert not p.find(r"notes\.txt changed")


def test_an_idle_launcher_with_reload_stays_off_the_cpu(launcher_start, tmp_path):
    project = make_project(tmp_path)
    p, _ = start_watching(launcher_start, project, "--workers", "1")

    def cpu_seconds():
        with open(f"/proc/{p.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    start, started_at = cpu_seconds(), time.monotonic()
    time.sleep(3.0)  # measuring idleness: nothing to wait for
    used = cpu_seconds() - start
    elapsed = time.monotonic() - started_at
    assert used / elapsed < 0.05, f"{used:.3f}s of CPU in {elapsed:.1f}s idle"


def test_reload_refuses_an_app_object(tmp_path):
    import subprocess

    from conftest import evserve_venv

    code = "import evserve\nevserve.serve(lambda e, s: [], workers=1, reload=True)\n"
    out = subprocess.run(
        [str(evserve_venv() / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "--reload needs the app given as APP" in out.stderr
