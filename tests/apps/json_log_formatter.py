"""A logging Formatter writing one JSON object per record, with the access fields evserve
puts on the records of "evserve.access" (used by the --log-config tests)."""

import json
import logging

ACCESS_FIELDS = (
    "remote_addr", "method", "path", "query", "protocol", "status", "bytes", "duration",
    "referer", "user_agent", "request_id",
)


class JsonFormatter(logging.Formatter):
    def format(self, record):
        out = {
            "logger": record.name,
            "level": record.levelname,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        return json.dumps(out)
