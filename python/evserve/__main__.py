"""`python -m evserve` and the `evserve` console script: the command line.

The exit code comes back from the server and leaves through sys.exit, so Python
finalizes normally: atexit handlers run and buffered output is flushed.
"""

import os
import sys

from evserve import _evserve


def main():
    """Runs the evserve command line with sys.argv; exits with its code."""
    sys.exit(_evserve.main(sys.argv, sys.executable))


if __name__ == "__main__":
    # `python -m` put the start-up directory first on sys.path; the server sets
    # sys.path itself (--pythonpath, then the working directory after --chdir).
    if not getattr(sys.flags, "safe_path", False) and sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    main()
