"""Fixtures of the multi-host harness: one cluster (3 hosts, nginx, a client; see cluster.py)
for the whole session, skipped with its reason where network namespaces cannot be made, and
always torn down, also after a failure or Ctrl-C. Each test starts from a healthy cluster:
every link up, every launcher running, nginx on the configuration without extra flags.
"""

import pytest

import cluster as cluster_mod
from loadrun import table_lines
from scenarios import RESULTS

RESULTS_HEADER = []  # what the cluster was (netem or not), printed above the figures


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    reason = cluster_mod.why_unavailable()
    if reason:
        pytest.skip(reason)
    c = cluster_mod.Cluster(tmp_path_factory.mktemp("multihost"))
    try:
        c.build()
        RESULTS_HEADER.append(c.describe())
        c.start_backends()
        c.start_nginx()
        yield c
    finally:
        c.close()


@pytest.fixture
def healthy(cluster):
    """The cluster as a test expects to find it, restored after the test whatever it did."""
    yield cluster
    restore(cluster)


def restore(c):
    for b in c.backends:
        b.set_link(True)
        if b.proc is None or b.proc.poll() is not None:
            b.kill_all()
            b.start()
    c.reload_nginx()
    c.wait_answering([a for b in c.backends for a in b.addrs] + [f"{cluster_mod.BALANCER_ADDR}:80"])


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    terminalreporter.section("multi-host figures")
    for line in RESULTS_HEADER:
        terminalreporter.write_line(line)
    for line in table_lines(RESULTS):
        terminalreporter.write_line(line)
