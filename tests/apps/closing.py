"""A response iterable that appends "<ident> closed" to $EVSERVE_TEST_STATE/close.log when the
server calls its close(): lets tests wait for close() however the response ended."""

import os
import time

STATE = os.environ.get("EVSERVE_TEST_STATE", "/tmp")


class RecordsClose:
    def __init__(self, ident, chunks, close_delay=0.0):
        self.ident = ident
        self.chunks = chunks
        self.close_delay = close_delay

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        time.sleep(self.close_delay)
        with open(os.path.join(STATE, "close.log"), "a") as f:
            f.write(f"{self.ident} closed\n")
