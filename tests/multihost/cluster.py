"""Several evserve hosts behind one real nginx, on one machine: each "host" is a Linux network
namespace on a bridge, with a private address only these namespaces use.

Layout (PREFIX is unique per run, `emh<pid>`; the addresses live only inside the run's own
namespaces, so two runs never collide):

    PREFIX-br   the bridge `br0`, with one veth port per node (the port's name is the node's)
    PREFIX-bal  nginx, 10.213.0.2, from `evserve nginx-config`
    PREFIX-cli  the load client, 10.213.0.3
    PREFIX-h1.. one evserve launcher each, 10.213.0.11, .12, ...

Every node's link gets 1 ms of `tc netem` delay when the kernel has netem (`netem` says
whether it did). `Cluster.close()` kills every process in every namespace of the run and
deletes them; `remove_stale()` does the same for runs whose process is gone (a run killed
with SIGKILL). Nothing here ever touches a namespace of another live run.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NSCLIENT = HERE / "nsclient.py"
APP_DIR = HERE / "app"
SUBNET = "10.213.0"
BALANCER_ADDR = f"{SUBNET}.2"
CLIENT_ADDR = f"{SUBNET}.3"
PORTS = (8001, 8002)
NAME_RE = re.compile(r"^emh(\d+)-")
STOP_TIMEOUT = 10.0


def evserve_bin():
    return os.environ.get("EVSERVE_BIN") or str(REPO / ".venv-test" / "bin" / "evserve")


def nginx_bin():
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def sh(*argv, check=True, timeout=20.0):
    """Runs a command to completion; a failure raises with its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def why_unavailable():
    """None if namespaces can be made here, else a one-line reason to skip."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None and not os.path.exists("/usr/sbin/ip"):
        return "iproute2 (`ip`) is not installed"
    if nginx_bin() is None:
        return "nginx is not installed"
    probe = f"emh{os.getpid()}-probe"
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    sh("ip", "netns", "del", probe, check=False)
    return None


def namespaces():
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def kill_namespace(ns):
    """SIGKILLs every process in `ns` and deletes it."""
    for _ in range(50):
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.05)
    sh("ip", "netns", "del", ns, check=False)


def remove_stale():
    """Removes the namespaces of earlier runs whose process no longer exists."""
    for ns in namespaces():
        m = NAME_RE.match(ns)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}"):
            kill_namespace(ns)


class Backend:
    """One application host: its namespace, address, app directory and launcher."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = f"h{index}"
        self.ns = f"{cluster.prefix}-{self.name}"
        self.addr = f"{SUBNET}.{10 + index}"
        self.dir = cluster.workdir / self.name
        self.app_dir = self.dir / "app"
        self.state = self.dir / "state"
        self.proc = None
        self.logs = []

    @property
    def addrs(self):
        return [f"{self.addr}:{p}" for p in PORTS]

    def install_app(self):
        shutil.copytree(APP_DIR, self.app_dir, ignore=shutil.ignore_patterns("__pycache__"))
        self.state.mkdir(parents=True)

    def set_version(self, version):
        (self.app_dir / "version.py").write_text(f'VERSION = "{version}"\n')

    def start(self):
        """Starts the launcher (it stays in the namespace: `ip netns exec` execs it)."""
        log = self.dir / f"launcher-{len(self.logs)}.log"
        self.logs.append(log)
        env = dict(os.environ, EVSERVE_MH_HOST=self.name, EVSERVE_MH_STATE=str(self.state),
                   PYTHONDONTWRITEBYTECODE="1")
        argv = ["ip", "netns", "exec", self.ns, evserve_bin(), "--host", self.addr,
                "--port-range", f"{PORTS[0]}-{PORTS[-1]}", "--forwarded-allow-ips", BALANCER_ADDR,
                "--chdir", str(self.app_dir), "--control-socket", str(self.dir / "control.sock"),
                "app:application"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=str(self.dir), env=env, start_new_session=True)
        return self

    def log_text(self):
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def kill_all(self):
        """SIGKILL to every process of the host at once (a crashed machine)."""
        pids = sh("ip", "netns", "pids", self.ns).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(timeout=STOP_TIMEOUT)
        return len(pids)

    def set_link(self, up):
        """The host's cable: its port on the bridge, down or up."""
        sh("ip", "-n", self.cluster.bridge_ns, "link", "set", self.name, "up" if up else "down")

    def posts_received(self):
        """Every X-Request-Id the app on this host recorded for a POST (one entry per receipt)."""
        ids = []
        for path in self.state.glob("posts-*.log"):
            ids.extend(line for line in path.read_text().splitlines() if line)
        return ids


class Cluster:
    def __init__(self, workdir, hosts=3):
        self.workdir = Path(workdir)
        self.prefix = f"emh{os.getpid()}"
        self.bridge_ns = f"{self.prefix}-br"
        self.balancer_ns = f"{self.prefix}-bal"
        self.client_ns = f"{self.prefix}-cli"
        self.backends = [Backend(self, i) for i in range(1, hosts + 1)]
        self.nginx_proc = None
        self.nginx_dir = self.workdir / "nginx"
        self.nginx_conf = self.nginx_dir / "nginx.conf"
        self.netem = None
        self.made = []
        # measure.py --proxy-connect-timeout: another value than the generated one, to measure it.
        self.connect_timeout_override = None

    # Topology.
    def build(self):
        remove_stale()
        self._add_ns(self.bridge_ns)
        sh("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        nodes = [("bal", self.balancer_ns, BALANCER_ADDR), ("cli", self.client_ns, CLIENT_ADDR)]
        nodes += [(b.name, b.ns, b.addr) for b in self.backends]
        for port, ns, addr in nodes:
            self._add_node(port, ns, addr)
        for b in self.backends:
            b.install_app()
        return self

    def _add_ns(self, ns):
        sh("ip", "netns", "add", ns)
        self.made.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")

    def _add_node(self, port, ns, addr):
        self._add_ns(ns)
        sh("ip", "-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0")
        sh("ip", "-n", self.bridge_ns, "link", "set", port, "up")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        delay = sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms",
                   check=False)
        if self.netem is None or self.netem:
            self.netem = delay.returncode == 0
        self.netem_error = delay.stderr.strip()

    def describe(self):
        delay = "1 ms netem delay per link" if self.netem else f"no added delay (tc netem: {self.netem_error})"
        return (f"{len(self.backends)} hosts x {len(PORTS)} instances, nginx on {BALANCER_ADDR}, "
                f"client {CLIENT_ADDR}, {delay}")

    # Processes.
    def client_cmd(self, *args):
        return ["ip", "netns", "exec", self.client_ns, sys.executable, str(NSCLIENT), *args]

    def wait_answering(self, addrs, timeout=30.0):
        proc = subprocess.run(self.client_cmd("wait", "--timeout", str(timeout), *addrs), capture_output=True,
                              text=True, timeout=timeout + 10)
        if proc.returncode != 0:
            logs = "\n".join(b.log_text()[-1500:] for b in self.backends)
            raise AssertionError(f"{proc.stderr.strip()}\nlauncher logs:\n{logs}")

    def get(self, addr, path="/", headers=()):
        """One GET from the client namespace: {"status", "headers"}."""
        argv = self.client_cmd("get", addr, path, *[f"--header={h}" for h in headers])
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if proc.returncode != 0:
            raise AssertionError(f"GET {addr}{path} failed: {proc.stderr.strip()[-500:]}")
        return json.loads(proc.stdout)

    def start_backends(self):
        for b in self.backends:
            b.start()
        self.wait_answering([a for b in self.backends for a in b.addrs])

    def nginx_config_text(self, *extra, hosts=None):
        """`evserve nginx-config` for every backend (or the first `hosts`), plus `extra` flags."""
        argv = [evserve_bin(), "nginx-config", "--listen", f"{BALANCER_ADDR}:80"]
        for b in self.backends[:hosts]:
            argv += ["--backend", f"{b.addr}:{PORTS[0]}-{PORTS[-1]}"]
        text = sh(*argv, *extra).stdout
        if self.connect_timeout_override:
            line = f"proxy_connect_timeout {self.connect_timeout_override};"
            text = re.sub(r"proxy_connect_timeout [^;]+;", line, text)
        return text

    def write_nginx_config(self, *extra, hosts=None):
        (self.nginx_dir / "run").mkdir(parents=True, exist_ok=True)
        text = self.nginx_config_text(*extra, hosts=hosts)
        self.nginx_conf.write_text(text)
        return text

    def _nginx_argv(self, *more):
        return ["ip", "netns", "exec", self.balancer_ns, nginx_bin(), "-p", str(self.nginx_dir),
                "-e", "run/error.log", "-c", str(self.nginx_conf), *more]

    def start_nginx(self, *extra):
        self.write_nginx_config(*extra)
        sh(*self._nginx_argv("-t"))
        log = open(self.nginx_dir / "stderr.log", "wb")
        self.nginx_proc = subprocess.Popen(self._nginx_argv("-g", "daemon off;"), stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_answering([f"{BALANCER_ADDR}:80"])

    def reload_nginx(self, *extra, hosts=None):
        """Regenerates the configuration and has nginx reload it (new workers take over)."""
        self.write_nginx_config(*extra, hosts=hosts)
        sh(*self._nginx_argv("-s", "reload"))

    def nginx_workers(self):
        """Pids of nginx's worker processes (a reload replaces them)."""
        out = sh("ip", "netns", "pids", self.balancer_ns).stdout.split()
        master = self.nginx_proc.pid if self.nginx_proc else None
        workers = []
        for pid in out:
            try:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == master:
                workers.append(int(pid))
        return workers

    def close(self):
        """Kills every process of the run (by namespace) and deletes every namespace it made."""
        for ns in reversed(self.made):
            kill_namespace(ns)
        procs = [b.proc for b in self.backends] + [self.nginx_proc]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
        self.made.clear()
