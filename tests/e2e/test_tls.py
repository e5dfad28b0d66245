"""TLS at nginx (--tls-cert, --tls-key, --redirect-http): the real launcher runs the real nginx
with a self-signed certificate made here with openssl; curl checks HTTP/2, the redirect of
plain HTTP, and what the app sees (https, the client's own address).

Skipped, with the reason, only when nginx, openssl or curl is not installed.
"""

import json
import shutil
import subprocess

import pytest

from test_launcher import APPS, EVSERVE, NGINX, launcher_free_ports, launcher_start  # noqa: F401 (fixture)

needs_tools = pytest.mark.skipif(
    NGINX is None or not shutil.which("openssl") or not shutil.which("curl"),
    reason="needs nginx, openssl and curl (apt-get install nginx openssl curl)",
)


def make_self_signed(directory):
    """A certificate for localhost and 127.0.0.1 (SAN) and its key, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def curl(*args):
    """curl's output (`-w` text after the body) and exit code; never follows redirects."""
    out = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture
def tls_launcher(launcher_start, tmp_path):
    cert, key = make_self_signed(tmp_path)
    https_port, http_port, first, last = launcher_free_ports(4)
    p = launcher_start(
        "--port-range", f"{first}-{last}",
        "--nginx-conf", tmp_path / "nginx" / "nginx.conf", "--nginx",
        "--listen", f"127.0.0.1:{https_port}",
        "--redirect-http", str(http_port),
        "--tls-cert", cert, "--tls-key", key,
        APPS / "environ_app.py:application",
    )
    p.wait_ready()
    return p, cert, https_port, http_port


@needs_tools
def test_https_answers_over_http2_and_the_app_sees_https_and_the_client(tls_launcher):
    p, cert, https_port, _ = tls_launcher
    assert p.find(rf"nginx \(pid \d+\) on https://127.0.0.1:{https_port}"), p.output()
    # The client connects from 127.0.0.2: the app must see that address, not nginx's.
    code, out, err = curl(
        "--cacert", str(cert), "--interface", "127.0.0.2", "-w", "\n%{http_version} %{http_code}",
        "-H", "X-Forwarded-For: 6.6.6.6",
        f"https://localhost:{https_port}/where?x=1",
    )
    assert code == 0, err
    body, _, tail = out.rpartition("\n")
    assert tail == "2 200", out
    environ = {k: v[1] for k, v in json.loads(body).items() if not k.startswith("_")}
    assert environ["wsgi.url_scheme"] == "https", environ
    assert environ["REMOTE_ADDR"] == "127.0.0.2", environ
    assert environ["HTTP_HOST"] == f"localhost:{https_port}", environ
    assert environ["PATH_INFO"] == "/where" and environ["QUERY_STRING"] == "x=1", environ


@needs_tools
def test_plain_http_is_redirected_to_https_with_host_and_uri(tls_launcher, tmp_path):
    _, cert, https_port, http_port = tls_launcher
    big_body = tmp_path / "body"
    big_body.write_bytes(b"x" * 5_000_000)
    code, out, err = curl(
        "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
        "-H", f"Host: localhost:{http_port}",
        f"http://127.0.0.1:{http_port}/a/b?c=d&e=f",
    )
    assert code == 0, err
    assert out == f"301 https://localhost:{https_port}/a/b?c=d&e=f", out
    # A POST with a large body is redirected too, not refused for its size.
    code, out, err = curl(
        "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:",
        "--data-binary", f"@{big_body}", f"http://127.0.0.1:{http_port}/form",
    )
    assert (code, out) == (0, "301"), (out, err)


@needs_tools
def test_tls_below_1_2_is_refused(tls_launcher):
    _, cert, https_port, _ = tls_launcher
    code, _, _ = curl(
        "--cacert", str(cert), "--tlsv1.1", "--tls-max", "1.1", "-o", "/dev/null",
        f"https://localhost:{https_port}/",
    )
    assert code != 0, "TLS 1.1 accepted"
    code, out, err = curl(
        "--cacert", str(cert), "--tlsv1.3", "-o", "/dev/null", "-w", "%{http_code}",
        f"https://localhost:{https_port}/",
    )
    assert (code, out) == (0, "200"), err


def test_unreadable_tls_files_stop_the_launcher_with_one_line(tmp_path):
    ports = launcher_free_ports(2)
    not_pem = tmp_path / "cert.txt"
    not_pem.write_text("not a certificate\n")
    common = ["--port-range", f"{ports[0]}-{ports[1]}", "--nginx-conf", str(tmp_path / "n.conf")]
    cases = [
        (["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(not_pem)], "--tls-cert"),
        (["--tls-cert", str(not_pem), "--tls-key", str(not_pem)], "not a PEM file"),
        (["--tls-cert", str(not_pem)], "--tls-key go together"),
    ]
    for flags, expected in cases:
        out = subprocess.run(
            [str(EVSERVE), *common, *flags, str(APPS / "launcher_app.py:app")],
            capture_output=True, text=True, timeout=20, cwd=tmp_path,
        )
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().count("\n") == 0 and expected in out.stderr, out.stderr
    assert not (tmp_path / "n.conf").exists(), "a configuration was written despite the error"
