"""Issue A, large and slow responses: wsgi.file_wrapper on a real file and on a BytesIO, and
a 100 MiB stream to a client that stops reading, which must neither block other clients nor
grow the server's memory."""

import hashlib
import os
import socket
import time

import pytest

from conftest import Conn, get, request, wait_for


@pytest.fixture(scope="module")
def server(module_serve):
    return module_serve("files_app:application")


def test_file_wrapper_sends_a_real_file_exactly(server, tmp_path):
    data = os.urandom(5 * 1024 * 1024 + 123)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    r = request(server, get(f"/file?path={path}"), timeout=20)
    assert r.status == 200 and r.complete
    assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(data).hexdigest()


def test_file_wrapper_on_a_file_like_without_fileno(server):
    size = 300_000
    r = request(server, get(f"/bytesio?size={size}"), timeout=10)
    assert r.status == 200 and r.body == bytes(i % 251 for i in range(size))


def test_slow_reader_of_100mb_does_not_block_others_or_grow_memory(server):
    baseline = server.rss_kib()
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        slow.sendall(get("/big?mb=100&id=slow"))
        got = 0
        while got < 256 * 1024:
            got += len(slow.recv(65536))
        # The slow client now stops reading. Another client must be served promptly.
        for _ in range(3):
            started = time.monotonic()
            r = request(server, get("/hello"), timeout=5)
            assert r.body == b"hello"
            assert time.monotonic() - started < 2.0
        # Sample memory over a window: a server without backpressure would be buffering the
        # rest of the 100 MiB during it.
        peak = baseline
        window_end = time.monotonic() + 1.5
        while time.monotonic() < window_end:
            peak = max(peak, server.rss_kib())
            time.sleep(0.1)
        grown_mib = (peak - baseline) / 1024
        assert grown_mib < 50, f"RSS grew by {grown_mib:.0f} MiB while a client stalled"
    finally:
        slow.close()
    wait_for(lambda: "slow closed" in server.state_text("close.log"), 10,
             message="close() of the abandoned stream")


def test_large_upload_is_streamed_to_the_app(server):
    size = 20 * 1024 * 1024
    with Conn(server, timeout=30) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"z" * 65536
        for _ in range(size // len(block)):
            c.send(block)
        r = c.read_response(timeout=30)
    assert (r.status, r.body) == (200, str(size).encode())


def test_slowly_produced_stream_lets_other_clients_in_between_chunks(server):
    with Conn(server, timeout=15) as streaming:
        streaming.send(get("/trickle?secs=6"))
        streaming.read_until(b"\r\n\r\n", time.monotonic() + 5)  # the stream has started
        waits = []
        for _ in range(3):
            started = time.monotonic()
            assert request(server, get("/hello"), timeout=10).body == b"hello"
            waits.append(time.monotonic() - started)
        assert max(waits) < 0.5, f"other clients waited {['%.2f' % w for w in waits]}s behind a stream"
