"""--real-ip-from: nginx behind another proxy. A client connecting from the trusted proxy's
address (127.0.0.2 here) has its X-Forwarded-For believed; any other client's is replaced by
its own address. Real launcher, real nginx, the app reports what it sees.
"""

import http.client
import json

from test_launcher import (  # noqa: F401 (launcher_start is a fixture)
    APPS,
    launcher_free_ports,
    launcher_start,
    needs_nginx,
)


def remote_addr_seen(port, source, forwarded_for):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/", headers={"X-Forwarded-For": forwarded_for})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return json.loads(body)["REMOTE_ADDR"][1]
    finally:
        conn.close()


@needs_nginx
def test_only_the_proxy_in_front_of_nginx_sets_the_client_address(launcher_start, tmp_path):
    listen, first, last = launcher_free_ports(3)
    p = launcher_start(
        "--port-range", f"{first}-{last}",
        "--nginx-conf", tmp_path / "nginx" / "nginx.conf", "--nginx",
        "--listen", f"127.0.0.1:{listen}",
        "--real-ip-from", "127.0.0.2",
        APPS / "environ_app.py:application",
    )
    p.wait_ready()
    # From the trusted proxy: the right-most untrusted X-Forwarded-For entry.
    assert remote_addr_seen(listen, "127.0.0.2", "6.6.6.6, 203.0.113.9") == "203.0.113.9"
    # From anyone else: a forged header changes nothing.
    assert remote_addr_seen(listen, "127.0.0.3", "203.0.113.9") == "127.0.0.3"
    assert remote_addr_seen(listen, "127.0.0.1", "203.0.113.9") == "127.0.0.1"
