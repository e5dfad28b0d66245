"""A response iterable that appends "<ident> closed" to $EVSERVE_TEST_STATE/close.log when the
server calls its close(): lets tests wait for close() however the response ended."""

import os

STATE = os.environ.get("EVSERVE_TEST_STATE", "/tmp")


class RecordsClose:
    def __init__(self, ident, chunks):
        self.ident = ident
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        with open(os.path.join(STATE, "close.log"), "a") as f:
            f.write(f"{self.ident} closed\n")
