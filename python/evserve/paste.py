"""PasteDeploy server runner: `[server:main]` with `use = egg:evserve#main`.

    [server:main]
    use = egg:evserve#main
    host = 127.0.0.1
    port = 8001
    max_body_size = 10M
    access_log = -

Every option is a command-line flag with _ for - (host, port, bind, workers, ...),
given as an ini string and checked by the same code as on the command line, with the
same messages. Switches take true/false (yes/no, on/off, 1/0); options that may repeat
(pythonpath) take several values separated by whitespace or new lines.
"""

from typing import Any, Callable

from evserve import _FLAGS, serve

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def _switch(key: str, text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(f"--{key.replace('_', '-')}: '{text}' is not true or false")


def _option(key: str, text: Any) -> Any:
    if not isinstance(text, str):
        return text
    takes_value, repeatable = _FLAGS.get(key.replace("_", "-"), (True, False))
    if not takes_value:
        return _switch(key, text)
    if repeatable:
        return text.split()
    return text


def run(wsgi_app: Callable, global_conf: dict, **local_conf: str) -> None:
    """Serves `wsgi_app` with the options of the `[server:...]` section."""
    options = {key: _option(key, value) for key, value in local_conf.items()}
    serve(wsgi_app, **options)
