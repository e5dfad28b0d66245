"""The live status page at / of the `--metrics` listener, checked in headless Chromium: a
row per instance in the DOM, a chart whose points move under load, a screenshot that is not
blank. Skipped (with the reason) only when Chromium is not installed.
"""

import json
import re
import shutil
import subprocess
import zlib

import pytest

from conftest import free_port, wait_for
from metrics_helpers import Launcher, Load, fetch, scrape

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (CI installs it with apt-get install chromium)"
)
pytestmark = needs_chromium


def chromium(tmp_path, url, *mode):
    """Runs headless Chromium on `url` with `mode` (`--dump-dom`, `--screenshot=...`)."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1100,860", "--virtual-time-budget=3000",
        *mode, url,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def chart_points(dom):
    found = re.search(r'id="line-rps"[^>]*points="([^"]*)"', dom)
    assert found, dom[-3000:]
    return found.group(1)


def png_pixels(path):
    """The decompressed image data of a PNG (filter bytes and all): enough to tell a blank
    page from a drawn one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


@pytest.fixture
def busy_launcher(tmp_path):
    port = free_port()
    launcher = Launcher(tmp_path, "--workers", "2", "--port", str(port))
    load = None
    try:
        launcher.wait_ready(2)
        load = Load(port, seconds=90)
        wait_for(lambda: load.answered > 50, 20, message="load to get going")
        yield launcher
    finally:
        if load:
            load.stop()
        launcher.stop()


def history_length(port):
    return len(json.loads(fetch(port, "/status.json")[2])["history"])


def test_the_page_shows_a_row_per_instance_and_a_moving_chart(busy_launcher, tmp_path):
    port = busy_launcher.metrics_port
    url = f"http://127.0.0.1:{port}/"
    page = fetch(port, "/")[2]
    for outside in ("src=", "href=", "@import", "url(", "https://"):
        assert outside not in page, f"the page loads something ({outside})"
    pids = {labels["pid"] for n, labels, _ in scrape(port) if n == "evserve_instance_resident_memory_bytes"}
    assert len(pids) == 2
    wait_for(lambda: history_length(port) >= 3, 20, interval=0.2, message="three chart points")
    first = chromium(tmp_path, url, "--dump-dom")
    rows = re.findall(r'<tr class="instance" data-slot="(\d+)" data-pid="(\d+)"', first)
    assert sorted(slot for slot, _ in rows) == ["0", "1"], rows
    assert {pid for _, pid in rows} == pids, rows
    before = chart_points(first)
    assert before.count(",") >= 3, before
    seen = history_length(port)
    wait_for(lambda: history_length(port) >= seen + 2, 20, interval=0.2, message="two more points")
    after = chart_points(chromium(tmp_path, url, "--dump-dom"))
    assert after != before and after.count(",") >= 3

    shot = tmp_path / "status.png"
    chromium(tmp_path, url, f"--screenshot={shot}")
    pixels = png_pixels(shot)
    assert len(set(pixels)) > 40, "the screenshot is blank"
    assert len(shot.read_bytes()) > 10_000
