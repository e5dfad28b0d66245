"""Issue A, command line: --version/--help, every APP form, --chdir, --pythonpath,
--root-path, --bind unix:, --access-log, bad flags, port in use, and apps that fail to load."""

import re
import socket

import pytest

from conftest import APPS, REPO, Conn, free_port, get, is_listening, run_evserve, wait_for


def cargo_version():
    match = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M)
    return match.group(1)


def error_lines(text):
    return [line for line in text.splitlines() if "error" in line.lower()]


def test_version_prints_name_and_cargo_version():
    done = run_evserve("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"evserve {cargo_version()}"


def test_help_lists_every_instance_flag():
    done = run_evserve("--help")
    assert done.returncode == 0, done.stderr
    for flag in ["--host", "--port", "--bind", "--chdir", "--pythonpath", "--root-path",
                 "--access-log", "--graceful-timeout", "--limit-request-line", "--limit-request-head",
                 "--limit-request-fields", "--max-body-size", "--header-timeout", "--body-timeout",
                 "--keep-alive", "--write-timeout", "--max-connections"]:
        assert flag in done.stdout, f"{flag} missing from --help"


@pytest.mark.parametrize(
    "app, form",
    [
        ("forms_app:application", "module:callable"),
        ("forms_app:holder.app", "module:obj.attr"),
        ("forms_app:create_app()", "factory debug=True"),
        ("forms_app:create_app(debug=False)", "factory debug=False"),
    ],
)
def test_app_argument_forms_load_the_named_callable(serve, app, form):
    assert serve(app).get_json("/")["form"] == form


def test_app_argument_module_alone_loads_application(serve):
    assert serve("forms_app").get_json("/")["form"] == "module:callable"


def test_app_argument_as_file_path_loads_the_file(serve, tmp_path):
    server = serve(f"{APPS / 'forms_app.py'}:application", cwd=tmp_path)
    assert server.get_json("/")["form"] == "module:callable"


def test_chdir_changes_directory_before_loading_the_app(serve, tmp_path):
    server = serve("forms_app:application", "--chdir", str(APPS), cwd=tmp_path)
    assert server.get_json("/")["cwd"] == str(APPS)


def test_pythonpath_adds_directories_to_sys_path(serve, tmp_path):
    server = serve("pp_module:application", "--pythonpath", str(APPS / "pythonpath_dir"),
                   "--pythonpath", str(tmp_path), cwd=tmp_path)
    r = server.get("/")
    assert (r.status, r.body) == (200, b"from-path")


def test_root_path_sets_script_name_and_strips_it_from_path_info(serve):
    server = serve("forms_app:application", "--root-path", "/mount")
    data = server.get_json("/mount/some/where")
    assert (data["script_name"], data["path_info"]) == ("/mount", "/some/where")
    data = server.get_json("/mount")
    assert (data["script_name"], data["path_info"]) == ("/mount", "")


def test_bind_unix_socket_serves_requests(serve, tmp_path):
    path = str(tmp_path / "evserve.sock")
    server = serve("http_app:application", bind_unix=path)
    with Conn(server) as c:
        c.send(get("/over-unix"))
        r = c.read_response()
    assert (r.status, r.body) == (200, b"path=/over-unix")
    assert f"Listening at: unix:{path}" in server.stderr()


def test_listening_line_names_the_address(serve):
    server = serve("http_app:application")
    wait_for(lambda: f"Listening at: http://127.0.0.1:{server.port}" in server.stderr(), 5,
             message="the Listening at line")


def test_access_log_writes_combined_format_lines(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("http_app:application", "--access-log", str(log))
    r = server.get("/logged?x=1", headers=["Referer: http://ref.example/", "User-Agent: e2e-agent/1.0"])
    assert r.status == 200
    combined = re.compile(
        r'^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
        r'"GET /logged\?x=1 HTTP/1\.1" 200 (\d+|-) "http://ref\.example/" "e2e-agent/1\.0"$'
    )
    lines = wait_for(lambda: log.exists() and [l for l in log.read_text().splitlines() if "/logged" in l], 5,
                     message="the access log line")
    assert combined.match(lines[0]), lines[0]
    assert combined.match(lines[0]).group(1) == str(len(r.body))


def test_access_log_dash_writes_to_stdout(serve):
    server = serve("http_app:application", "--access-log", "-")
    assert server.get("/to-stdout").status == 200
    wait_for(lambda: '"GET /to-stdout HTTP/1.1" 200' in server.stdout(), 5, message="the access log line on stdout")


@pytest.mark.parametrize(
    "args, mention",
    [
        (["--port", "notaport"], "notaport"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--max-body-size", "12X"], "--max-body-size"),
        (["--header-timeout", "-3"], "-3"),
        (["--bind", "nonsense::address"], "nonsense"),
    ],
)
def test_bad_flag_exits_non_zero_with_one_error_line(args, mention):
    done = run_evserve(*args, "http_app:application")
    assert done.returncode != 0
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert mention in lines[0], done.stderr
    assert "panicked" not in done.stderr


def test_port_in_use_exits_non_zero_with_one_error_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_evserve("--port", str(port), "http_app:application")
    assert done.returncode != 0
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert str(port) in lines[0] or "in use" in lines[0].lower(), done.stderr
    assert "Listening at" not in done.stderr


@pytest.mark.parametrize(
    "app, exception, mention",
    [
        ("broken_import:application", "ModuleNotFoundError", "broken_import"),
        ("no_such_module_evserve:application", "ModuleNotFoundError", "no_such_module_evserve"),
        ("forms_app:missing_attribute", "", "missing_attribute"),
        ("forms_app:not_callable", "", "not_callable"),
    ],
)
def test_app_that_fails_to_load_exits_2_with_traceback_and_one_line(app, exception, mention):
    port = free_port()
    done = run_evserve("--port", str(port), app)
    assert done.returncode == 2, done.stderr
    error = [l for l in done.stderr.splitlines() if l.startswith("evserve: error:")]
    assert len(error) == 1, done.stderr
    assert mention in error[0], done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("evserve: error:"), done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert exception in done.stderr
    assert "Listening at" not in done.stderr
    assert not is_listening(port)


def test_readme_example_app_serves_hello(serve):
    server = serve("hello:application", "--chdir", str(REPO / "examples"))
    r = server.get("/")
    assert (r.status, r.body) == (200, b"Hello, World!\n")


def _make_regular_file(path):
    path.write_text("print('my app')\n")
    return lambda: path.read_text() == "print('my app')\n"


def _make_directory(path):
    path.mkdir()
    (path / "inside.txt").write_text("keep")
    return lambda: (path / "inside.txt").read_text() == "keep"


def _make_symlink(path):
    target = path.parent / "target.txt"
    target.write_text("keep")
    path.symlink_to(target)
    return lambda: path.is_symlink() and target.read_text() == "keep"


@pytest.mark.parametrize(
    "make, kind",
    [
        (_make_regular_file, "a regular file"),
        (_make_directory, "a directory"),
        (_make_symlink, "a symbolic link"),
    ],
)
def test_bind_unix_never_deletes_a_file_that_is_not_a_socket(tmp_path, make, kind):
    path = tmp_path / "app.py"
    untouched = make(path)
    done = run_evserve("--bind", f"unix:{path}", "http_app:application")
    assert done.returncode == 1, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and kind in lines[0] and "not a socket" in lines[0], done.stderr
    assert untouched(), f"{path} was changed"
    assert "Listening at" not in done.stderr


def test_bind_unix_replaces_a_stale_socket_but_not_a_live_one(serve, tmp_path):
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a crashed server's leftover
    server = serve("http_app:application", bind_unix=str(path))
    done = run_evserve("--bind", f"unix:{path}", "http_app:application")
    assert done.returncode == 1, done.stderr
    assert "another server is listening there" in done.stderr, done.stderr
    assert server.get("/still").status == 200


def test_port_in_use_is_named_alike_by_the_instance_and_the_launcher(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        single = run_evserve("--port", str(port), "http_app:application")
        launcher = run_evserve(
            "--port-range", f"{port}-{port}", "--control-socket", str(tmp_path / "c.sock"),
            "http_app:application",
        )
    lines = [error_lines(single.stderr), error_lines(launcher.stderr)]
    assert [len(l) for l in lines] == [1, 1], (single.stderr, launcher.stderr)
    for line in (lines[0][0], lines[1][0]):
        assert f"cannot listen on http://127.0.0.1:{port}: address already in use" in line, line
    assert single.returncode == 1 and launcher.returncode == 1


def test_a_percent_encoded_root_path_is_refused():
    # Bug: --root-path /a%20b was taken as given, then never matched the decoded path, so
    # SCRIPT_NAME stayed /a%20b and the prefix was never stripped.
    done = run_evserve("--root-path", "/a%20b", "forms_app:application")
    assert done.returncode == 2, done
    assert "--root-path is matched against the decoded path" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
