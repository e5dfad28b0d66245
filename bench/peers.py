"""Starts the peer servers that have no command line of their own.

    python peers.py bjoern|meinheld|pyruvate APP_NAME PORT [PROCESSES]

APP_NAME is a callable in apps.py. With PROCESSES > 1 (bjoern only) the
process forks so that each process listens on the port with SO_REUSEPORT and
the kernel spreads connections between them.
"""

import os
import sys

import apps


def serve_bjoern(app, port, processes):
    import bjoern

    for _ in range(processes - 1):
        if os.fork() == 0:
            break  # the child listens too; the parent keeps forking
    bjoern.listen(app, "127.0.0.1", port, reuse_port=processes > 1)
    bjoern.run()


def serve_meinheld(app, port, processes):
    from meinheld import server

    server.listen(("127.0.0.1", port))
    server.set_keepalive(75)  # off unless asked for; every other server keeps alive
    server.set_access_logger(None)  # it logs every request by default; the others don't
    server.run(app)


def serve_pyruvate(app, port, processes):
    import pyruvate

    # Two worker threads: the server is pinned to one core anyway, a second
    # thread only lets one request wait on the network while another runs.
    pyruvate.serve(app, "127.0.0.1:{}".format(port), 2)


SERVERS = {
    "bjoern": serve_bjoern,
    "meinheld": serve_meinheld,
    "pyruvate": serve_pyruvate,
}


def main(argv):
    if len(argv) not in (4, 5) or argv[1] not in SERVERS:
        sys.exit("usage: peers.py {} APP_NAME PORT [PROCESSES]".format("|".join(SERVERS)))
    app = getattr(apps, argv[2])
    processes = int(argv[4]) if len(argv) == 5 else 1
    if processes > 1 and argv[1] != "bjoern":
        sys.exit("peers.py: only bjoern runs several processes here")
    SERVERS[argv[1]](app, int(argv[3]), processes)


if __name__ == "__main__":
    main(sys.argv)
