"""The APP argument's forms: module:callable, module:obj.attr, module:factory(args), and a
non-callable attribute. Each app answers with JSON naming the form it was loaded through."""

import json
import os
import sys
import types


def _answering(label):
    def app(environ, start_response):
        body = json.dumps(
            {
                "form": label,
                "cwd": os.getcwd(),
                "script_name": environ["SCRIPT_NAME"],
                "path_info": environ["PATH_INFO"],
                "sys_path": sys.path,
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


application = _answering("module:callable")


holder = types.SimpleNamespace(app=_answering("module:obj.attr"))


def create_app(debug=True):
    return _answering(f"factory debug={debug!r}")


not_callable = 42
