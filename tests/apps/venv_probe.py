"""Reports which interpreter and packages the app sees: used to check --venv / $VIRTUAL_ENV."""

import importlib
import json
import sys


def _where(name):
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return getattr(module, "__file__", None) or "builtin"


def application(environ, start_response):
    body = json.dumps(
        {
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "version": list(sys.version_info[:2]),
            "marker": _where("evserve_venv_marker"),
            "flask": _where("flask"),
            "pytest": _where("pytest"),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
