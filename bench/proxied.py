"""One proxied deployment for the bench: backends behind the nginx text evserve generates.

    python proxied.py static|bjoern|gunicorn APP_NAME PORT WORKDIR [tcp|unix]

nginx listens on 127.0.0.1:PORT with the configuration printed by
`evserve nginx-config`, its upstream swapped to the backends started here:
- static: an nginx that answers 200 without any app (the ceiling of any proxied setup);
- bjoern: two bjoern processes;
- gunicorn: gunicorn -w 2 (sync workers).
The backends listen on PORT+1 and PORT+2 (tcp), or on Unix sockets in WORKDIR (unix).
Every process stays in this process's group, so the harness stops them as one. Prints
"ready:" once nginx answers and every backend accepts.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import apps

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.join(HERE, ".venv", "bin")
START_TIMEOUT = 20.0


def evserve_bin():
    return os.environ.get("EVSERVE_BIN") or os.path.join(VENV_BIN, "evserve")


def static_backend(addr, workdir, index):
    """An nginx answering the hello body itself."""
    body = apps.HELLO_BODY.decode().replace("\n", "\\n")
    conf = os.path.join(workdir, "static%d.conf" % index)
    listen = "unix:%s" % addr if addr.startswith("/") else addr
    with open(conf, "w") as f:
        f.write(
            "worker_processes 1;\n"
            "pid %(w)s/static%(i)d.pid;\n"
            "error_log %(w)s/static%(i)d.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "  access_log off; keepalive_requests 100000000;\n"
            "  client_body_temp_path %(w)s; proxy_temp_path %(w)s;\n"
            "  fastcgi_temp_path %(w)s; uwsgi_temp_path %(w)s; scgi_temp_path %(w)s;\n"
            '  server { listen %(l)s; location / { default_type text/plain; return 200 "%(b)s"; } }\n'
            "}\n" % {"w": workdir, "i": index, "l": listen, "b": body}
        )
    return ["nginx", "-p", workdir, "-c", conf, "-g", "daemon off;"]


def backends(kind, app, port, workdir, transport):
    """[(argv, address)] of the backends; an address is HOST:PORT or a socket path."""
    if transport == "unix":
        # nginx's workers run as an unprivileged user: the sockets live in a directory
        # they can traverse, not in the harness's private one.
        sockdir = tempfile.mkdtemp(prefix="evserve-bench-sockets-")
        os.chmod(sockdir, 0o711)
        addrs = [os.path.join(sockdir, "backend%d.sock" % i) for i in (1, 2)]
    else:
        addrs = ["127.0.0.1:%d" % (port + i) for i in (1, 2)]
    py = os.path.join(VENV_BIN, "python")
    if kind == "static":
        return [(static_backend(a, workdir, i), a) for i, a in enumerate(addrs, 1)]
    if kind == "bjoern":
        if transport == "unix":
            sys.exit("proxied.py: bjoern runs over tcp only here")
        return [([py, os.path.join(HERE, "peers.py"), "bjoern", app, a.rsplit(":", 1)[1]], a) for a in addrs]
    if kind == "gunicorn":
        bind = "unix:" + addrs[0] if transport == "unix" else addrs[0]
        argv = [os.path.join(VENV_BIN, "gunicorn"), "-w", "2", "-k", "sync", "-b", bind,
                "--chdir", HERE, "--log-level", "warning", "apps:" + app]  # fmt: skip
        return [(argv, addrs[0])]
    sys.exit("proxied.py: unknown backend kind %r" % kind)


def accepts(addr):
    family = socket.AF_UNIX if addr.startswith("/") else socket.AF_INET
    target = addr if addr.startswith("/") else (addr.rsplit(":", 1)[0], int(addr.rsplit(":", 1)[1]))
    try:
        with socket.socket(family) as s:
            s.settimeout(0.5)
            s.connect(target)
        return True
    except OSError:
        return False


def front_config(port, addrs, workdir):
    """The generated nginx text, for these backends."""
    argv = [evserve_bin(), "nginx-config", "--listen", "127.0.0.1:%d" % port]
    for a in addrs:
        argv += ["--backend", "unix:" + a if a.startswith("/") else a]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    os.makedirs(os.path.join(workdir, "run"), exist_ok=True)
    path = os.path.join(workdir, "front.conf")
    with open(path, "w") as f:
        f.write(text)
    return ["nginx", "-p", workdir, "-c", path, "-g", "daemon off;"]


def main(argv):
    if len(argv) not in (5, 6):
        sys.exit("usage: proxied.py static|bjoern|gunicorn APP_NAME PORT WORKDIR [tcp|unix]")
    kind, app, port, workdir = argv[1], argv[2], int(argv[3]), argv[4]
    transport = argv[5] if len(argv) == 6 else "tcp"
    procs, addrs = [], []

    def stop(*_):
        for sock in addrs:
            if sock.startswith("/"):
                shutil.rmtree(os.path.dirname(sock), ignore_errors=True)
                break
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    env = dict(os.environ, PYTHONPATH=HERE)
    started = backends(kind, app, port, workdir, transport)
    for backend_argv, _ in started:
        procs.append(subprocess.Popen(backend_argv, cwd=HERE, env=env))
    addrs[:] = [a for _, a in started]
    deadline = time.monotonic() + START_TIMEOUT
    while not all(accepts(a) for a in addrs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            print("proxied.py: a backend did not start", flush=True)
            stop()
        time.sleep(0.05)
    procs.append(subprocess.Popen(front_config(port, addrs, workdir), cwd=workdir))
    while not accepts("127.0.0.1:%d" % port):
        if time.monotonic() > deadline or procs[-1].poll() is not None:
            print("proxied.py: nginx did not start", flush=True)
            stop()
        time.sleep(0.05)
    print("ready: %s behind nginx on port %d (%s)" % (kind, port, transport), flush=True)
    while all(p.poll() is None for p in procs):
        time.sleep(0.5)
    print("proxied.py: a process exited", flush=True)
    stop()


if __name__ == "__main__":
    main(sys.argv)
