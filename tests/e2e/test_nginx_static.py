"""--static through the generated nginx configuration: nginx serves the files itself (alias,
cache headers, no listing, longest prefix first) and never asks the app. Real launcher, real
nginx.

The static directories are made under /tmp and opened to every user: nginx's workers run as
`nobody` when the tests run as root.
"""

import http.client
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from test_launcher import (  # noqa: F401 (launcher_start is a fixture)
    APPS,
    launcher_free_ports,
    launcher_start,
    needs_nginx,
)


@pytest.fixture
def static_root():
    root = Path(tempfile.mkdtemp(prefix="evserve-static-"))
    root.chmod(0o755)
    assets = root / "my \"assets\" dir"
    (assets / "css").mkdir(parents=True)
    (assets / "css" / "site.css").write_text("body { color: red }\n")
    (assets / "app.js").write_text("console.log(1)\n")
    (assets / "empty").mkdir()
    media = root / "media"
    media.mkdir()
    (media / "photo.txt").write_text("from media\n")
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    assets.chmod(0o755)
    yield assets, media
    shutil.rmtree(root, ignore_errors=True)


def fetch(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


@needs_nginx
def test_nginx_serves_static_files_itself_with_cache_headers(launcher_start, tmp_path, static_root):
    assets, media = static_root
    listen, first, last = launcher_free_ports(3)
    p = launcher_start(
        "--port-range", f"{first}-{last}",
        "--nginx-conf", tmp_path / "nginx" / "nginx.conf", "--nginx",
        "--listen", f"127.0.0.1:{listen}",
        "--static", f"/static/={assets}",
        "--static", f"/static/media/={media}",
        APPS / "launcher_app.py:app",
    )
    p.wait_ready()
    status, headers, body = fetch(listen, "/static/css/site.css")
    assert (status, body) == (200, "body { color: red }\n"), (status, body)
    assert headers["Content-Type"].startswith("text/css"), headers
    assert "max-age=3600" in headers.get("Cache-Control", ""), headers
    assert "Last-Modified" in headers and "ETag" in headers, headers
    status, _, _ = fetch(listen, "/static/css/site.css", {"If-None-Match": headers["ETag"]})
    assert status == 304
    status, headers, _ = fetch(listen, "/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript"), headers
    # The longest prefix wins.
    assert fetch(listen, "/static/media/photo.txt")[2] == "from media\n"
    # No listing, no fallback to the app, no way out of the directory.
    assert fetch(listen, "/static/empty/")[0] == 403
    assert fetch(listen, "/static/css/")[0] == 403
    status, _, body = fetch(listen, "/static/missing.css")
    assert status == 404 and "pid=" not in body, body
    status, _, body = fetch(listen, "/static/../../etc/passwd")
    assert "root:" not in body, body
    status, _, body = fetch(listen, "/static/%2e%2e/%2e%2e/etc/passwd")
    assert "root:" not in body, body
    # Everything else still goes to the app.
    status, _, body = fetch(listen, "/other")
    assert status == 200 and body.startswith("pid="), body


@needs_nginx
@pytest.mark.skipif(os.geteuid() != 0, reason="nginx's workers change user only when root starts it")
def test_a_static_dir_nginx_workers_cannot_read_is_warned_about(launcher_start, tmp_path):
    hidden = tmp_path / "private"
    hidden.mkdir()
    tmp_path.chmod(0o700)
    listen, first = launcher_free_ports(2)
    p = launcher_start(
        "--port-range", f"{first}-{first}",
        "--nginx-conf", tmp_path / "nginx" / "nginx.conf", "--nginx",
        "--listen", f"127.0.0.1:{listen}",
        "--static", f"/static/={hidden}",
        APPS / "launcher_app.py:app",
    )
    p.wait_ready()
    line = p.find(r"WARN.*--static")
    assert line and f"{tmp_path} is mode 0700" in line[1], p.output()
