"""evserve: single-threaded event-loop WSGI server instances.

    import evserve
    evserve.serve(app, port=8001, max_body_size="10M", access_log="-")

The server itself is native code in `evserve._evserve`; this module turns keyword
arguments into the command line's flags so both are checked by the same code.
"""

import os
from typing import Any, Callable, NoReturn, Optional

from evserve import _evserve

__all__ = ["__version__", "serve", "main"]

__version__ = _evserve.__version__

# name -> (takes a value, may repeat), for every flag of the command line.
_FLAGS = {name: (takes_value, repeatable) for name, takes_value, repeatable in _evserve.server_flags()}


def _flag_args(options: dict, caller: str) -> list:
    """The command-line arguments for `options` (keyword names use _ for -)."""
    args = []
    for key, value in options.items():
        name = key.replace("_", "-")
        if name not in _FLAGS:
            raise TypeError(f"{caller} got an unexpected keyword argument '{key}'")
        takes_value, repeatable = _FLAGS[name]
        if value is None:
            continue
        if not takes_value:
            if not isinstance(value, bool):
                raise TypeError(f"{caller}: {key} is a switch: pass True or False, not {value!r}")
            if value:
                args.append(f"--{name}")
            continue
        if isinstance(value, (list, tuple)) and not repeatable:
            raise TypeError(f"{caller}: {key} takes one value, not a list")
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, bool):
                raise TypeError(f"{caller}: {key} takes a value, not {item!r}")
            args += [f"--{name}", os.fsdecode(item) if isinstance(item, (bytes, os.PathLike)) else str(item)]
    return args


def serve(
    app: Callable,
    host: Optional[str] = None,
    port: Optional[int] = None,
    workers: Optional[int] = None,
    **options: Any,
) -> None:
    """Serves the WSGI callable `app` until a stop signal (SIGTERM or SIGINT).

    The keyword arguments are the command line's flags with _ for -, e.g.
    `max_body_size="10M"`, `access_log="-"`, `pythonpath=["lib", "src"]` (a list
    repeats a flag), `nginx=True` (a switch). None leaves a flag at its default.

    Returns None after a graceful stop. Raises TypeError for an unknown keyword,
    ValueError for a bad value (with the command line's message), and RuntimeError
    when the server cannot start or stops with an error (the log says why).
    Must be called from the main thread, once per process; afterwards SIGINT and
    SIGTERM are Python's again.

    With `workers` or `port_range` this process becomes the launcher: it forks one
    process that holds `app` (its memory is then shared copy-on-write) and the instances
    are forked from that one. The forked processes run the `atexit` handlers when they
    stop and never return from this call; only the caller does. A reload (SIGHUP)
    replaces the instances with new forks of the same object.
    """
    options = {"host": host, "port": port, "workers": workers, **options}
    code = _evserve.serve(app, _flag_args(options, "serve()"))
    if code != 0:
        raise RuntimeError(f"evserve stopped with exit code {code}; its log says why")


def main() -> NoReturn:
    """The `evserve` command line (sys.argv); exits with its code."""
    from evserve.__main__ import main as _main

    _main()
