"""Reports the WSGI environ as JSON: each key maps to [type name, value] (value repr'd when it
is not a plain str/int/bool). `?op=read5,read,...` applies wsgi.input calls in order and
reports each result; without it the whole body is read with read(). `?errors=TEXT` writes
TEXT to wsgi.errors."""

import json
from urllib.parse import parse_qs

PLAIN = (str, int, bool, float, type(None))


def _input_op(stream, op):
    if op == "read":
        return stream.read().decode("latin-1")
    if op.startswith("read") and op[4:].isdigit():
        return stream.read(int(op[4:])).decode("latin-1")
    if op == "readline":
        return stream.readline().decode("latin-1")
    if op.startswith("readline") and op[8:].isdigit():
        return stream.readline(int(op[8:])).decode("latin-1")
    if op == "readlines":
        return [line.decode("latin-1") for line in stream.readlines()]
    if op == "iter":
        return [line.decode("latin-1") for line in stream]
    raise ValueError(op)


def application(environ, start_response):
    report = {}
    for key, value in environ.items():
        if isinstance(value, tuple):
            report[key] = ["tuple", list(value)]
        elif isinstance(value, PLAIN):
            report[key] = [type(value).__name__, value]
        else:
            report[key] = [type(value).__name__, repr(value)]
    report["_key_types"] = sorted({type(k).__name__ for k in environ})
    query = parse_qs(environ.get("QUERY_STRING", ""))
    stream = environ["wsgi.input"]
    if "op" in query:
        report["_input"] = [_input_op(stream, op) for op in query["op"][0].split(",")]
    else:
        report["_body"] = stream.read().decode("latin-1")
    if "errors" in query:
        environ["wsgi.errors"].write(query["errors"][0] + "\n")
        environ["wsgi.errors"].flush()
    body = json.dumps(report).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
