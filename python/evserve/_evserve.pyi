"""Native part of evserve (Rust). Use the `evserve` module's functions instead."""

__version__: str

def main(argv: list[str], executable: str) -> int:
    """Runs the command line (`argv` as sys.argv); returns the exit code."""

def serve(app: object, argv: list[str]) -> int:
    """Serves `app` with server flags `argv` (no program name, no APP); returns the
    exit code. Raises ValueError for a bad flag, TypeError for a non-callable app."""

def server_flags() -> list[tuple[str, bool, bool]]:
    """(name, takes_value, repeatable) for every server flag."""
