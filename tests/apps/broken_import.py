"""An app module whose import fails: start-up must stop with the traceback and exit 2."""

import evserve_no_such_module_anywhere  # noqa: F401


def application(environ, start_response):
    raise AssertionError("never reached")
