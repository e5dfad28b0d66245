"""The launcher's --nginx-conf and `evserve nginx-config`, given the same static, TLS and
trust flags for the same instances, write the same text (the installed binary, real files)."""

import subprocess

from test_launcher import (  # noqa: F401 (launcher_start is a fixture)
    APPS,
    EVSERVE,
    launcher_free_ports,
    launcher_start,
)


def test_launcher_and_nginx_config_write_the_same_configuration(launcher_start, tmp_path):
    (tmp_path / "static").mkdir()
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN TEST-----\n")
    listen, first, last = launcher_free_ports(3)
    shared = [
        "--listen", f"127.0.0.1:{listen}",
        "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
        "--redirect-http", "none",
        "--real-ip-from", "10.0.0.0/8",
        "--static", f"/static/={tmp_path / 'static'}",
    ]
    conf = tmp_path / "nginx" / "nginx.conf"
    p = launcher_start(
        "--port-range", f"{first}-{last}", "--nginx-conf", conf, *shared, APPS / "launcher_app.py:app"
    )
    p.wait_ready()
    printed = subprocess.run(
        [str(EVSERVE), "nginx-config", "--backend", f"127.0.0.1:{first}-{last}",
         "--upstream-keepalive", "1024", "--run-dir", f"{conf}.run", *shared],
        capture_output=True, text=True, timeout=20,
    )
    assert printed.returncode == 0, printed.stderr
    written = conf.read_text()
    assert "ssl http2" in written and "alias" in written and "set_real_ip_from" in written, written
    assert printed.stdout == written
