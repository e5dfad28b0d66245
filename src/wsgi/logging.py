"""Python logging for evserve (--log-config): applies the configuration file, and gives
the server the loggers it writes to: "evserve.error" for its own messages and
"evserve.access" for access lines (with the line's fields on the record)."""

import json
import logging
import logging.config
import os

error_log = logging.getLogger("evserve.error")
access_log = logging.getLogger("evserve.access")
LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def configure(path):
    """dictConfig for a .json file, fileConfig otherwise; a ValueError names what is wrong."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            if not isinstance(config, dict):
                raise ValueError("the file must hold a JSON object")
            config.setdefault("version", 1)
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{path}: {reason}") from None
    if access_log.getEffectiveLevel() > logging.INFO:
        access_log.setLevel(logging.INFO)


def log_message(level, message):
    error_log.log(LEVELS.get(level, logging.INFO), message)


def log_access(line, fields):
    access_log.info(line, extra=fields)


def reopen_files():
    """After a rotation: every file handler opens its file again by name."""
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    if handler.stream:
                        handler.close()
                        handler.stream = handler._open()
                finally:
                    handler.release()
