"""The app the access-log tests serve with evserve and with gunicorn: a few statuses, a
response header holding a quote, and a POST echo."""


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not here\n"]
    if environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        start_response("201 Created", [("Content-Type", "application/octet-stream")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Out", 'say "hi" \\o/')])
    return [b"hello\n"]
