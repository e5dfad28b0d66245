"""App for the launcher's end-to-end tests: fails to import."""
import launcher_module_that_does_not_exist  # noqa: F401


def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
