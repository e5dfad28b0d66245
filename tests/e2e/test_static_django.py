"""The Django admin served with --static is styled: a real Django project
(tests/apps/django_admin_site), `collectstatic` into a temporary STATIC_ROOT, and the
login page rendered by headless Chromium, once from a single instance and once through
the launcher's generated nginx configuration.

"Styled" is read from the screenshot: the admin header's blue (#417690) fills a band
across the page when base.css is applied, and is absent from the unstyled page (the
test without --static shows the check can fail). Through nginx, who serves /static/
(nginx itself or the instances behind it) is not asserted: only what the browser gets.
"""

import http.client
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import APPS, evserve_venv
from test_launcher import NGINX, launcher_free_ports, launcher_nginx_args, launcher_start  # noqa: F401

SITE = APPS / "django_admin_site"
APP = "adminsite.wsgi:application"
HEADER_BLUE = (0x41, 0x76, 0x90)
# The login box's header band is about 390 x 60 pixels of that blue at 1024x768; an
# unstyled page has none.
STYLED_MIN_PIXELS = 10_000


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed and could not be (scripts/test.sh installs it with apt-get)",
)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


@pytest.fixture(scope="module")
def static_root():
    """The admin's static files, collected as a deployment would, where nginx's workers
    (`nobody` when the tests run as root) can read them."""
    parent = Path(tempfile.mkdtemp(prefix="evserve-django-static-"))
    parent.chmod(0o755)
    try:
        yield collect_static(parent / "static")
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def collect_static(root):
    """Runs the site's collectstatic into `root`; returns it."""
    env = dict(os.environ, DJANGO_STATIC_ROOT=str(root))
    python = evserve_venv() / "bin" / "python"
    done = subprocess.run(
        [str(python), "manage.py", "collectstatic", "--noinput"],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (root / "admin" / "css" / "base.css").is_file()
    return root


def django_env(static_root, tmp_path):
    return {"DJANGO_STATIC_ROOT": str(static_root), "DJANGO_DB": str(tmp_path / "db.sqlite3")}


def fetch(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def screenshot(url, tmp_path):
    """A headless Chromium screenshot of `url`, as a PIL image."""
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
        "--window-size=1024,768", url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert shot.is_file(), f"no screenshot (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return Image.open(shot).convert("RGB")


def header_blue_pixels(image):
    """Pixels within a small distance of the admin header's blue."""
    r0, g0, b0 = HEADER_BLUE
    return sum(
        count
        for count, (r, g, b) in image.getcolors(maxcolors=1 << 24)
        if abs(r - r0) + abs(g - g0) + abs(b - b0) <= 12
    )


def assert_admin_styled(port, tmp_path):
    status, _, page = fetch(port, "/admin/login/")
    assert status == 200, page[:2000]
    assert b"/static/admin/css/base.css" in page
    status, content_type, css = fetch(port, "/static/admin/css/base.css")
    assert status == 200, css[:500]
    assert content_type.startswith("text/css")
    assert b"--header-bg" in css
    image = screenshot(f"http://127.0.0.1:{port}/admin/login/", tmp_path)
    blue = header_blue_pixels(image)
    assert blue >= STYLED_MIN_PIXELS, f"the login page looks unstyled: {blue} header-blue pixels"


@needs_chromium
def test_without_static_the_admin_login_page_is_unstyled(serve, static_root, tmp_path):
    server = serve(APP, "--chdir", str(SITE), env=dict(os.environ, **django_env(static_root, tmp_path)))
    assert fetch(server.port, "/static/admin/css/base.css")[0] == 404
    image = screenshot(f"http://127.0.0.1:{server.port}/admin/login/", tmp_path)
    assert header_blue_pixels(image) < STYLED_MIN_PIXELS / 10


@needs_chromium
def test_the_admin_served_by_an_instance_with_static_is_styled(serve, static_root, tmp_path):
    server = serve(
        APP,
        "--chdir", str(SITE),
        "--static", f"/static/={static_root}",
        env=dict(os.environ, **django_env(static_root, tmp_path)),
    )
    assert_admin_styled(server.port, tmp_path)


@needs_chromium
@needs_nginx
def test_the_admin_through_the_generated_nginx_configuration_is_styled(
    launcher_start, static_root, tmp_path  # noqa: F811
):
    ports = launcher_free_ports(3)
    listen, backends = ports[0], ports[1:]
    p = launcher_start(
        *launcher_nginx_args(tmp_path, backends, listen),
        "--chdir", SITE,
        "--static", f"/static/={static_root}",
        APP,
        cwd=tmp_path,
        env=django_env(static_root, tmp_path),
    )
    p.wait_ready(timeout=60)
    assert_admin_styled(listen, tmp_path)
