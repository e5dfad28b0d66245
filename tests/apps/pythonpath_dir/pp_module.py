"""An app importable only through --pythonpath pointing at this directory."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"from-path"]
