"""Logs as JSON lines on stderr: one object per event, never a token, a JWT or patient data."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import orjson

EXTRA_FIELDS = ("hook_instance", "error_type")


class Event(dict[str, Any]):
    """A log message that is already a JSON object: the formatter takes its fields as they are, and
    everything else that reads the message (getMessage) reads it as JSON text."""

    def __str__(self) -> str:
        return dumps(self)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any]
        if isinstance(record.msg, Event) and not record.args:
            event = record.msg
        else:
            message = record.getMessage()
            try:
                event = json.loads(message) if message.startswith("{") else {"message": message}
            except ValueError:
                event = {"message": message}
        event = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            **event,
        }
        for name in EXTRA_FIELDS:
            if getattr(record, name, None) is not None:
                event[name] = getattr(record, name)
        return dumps(event)


def dumps(event: dict[str, Any]) -> str:
    """One JSON line, by orjson (a tenth of json.dumps' time): UTF-8 as is, datetimes in ISO form, anything
    else JSON has no type for as its text; json.dumps only for what orjson refuses."""
    try:
        return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # beyond orjson: a number past 64 bits, a nesting past 255
        return json.dumps(event, default=str)


def configure() -> None:
    """Give the service's loggers one JSON handler on stderr (once per process)."""
    logger = logging.getLogger("cds_service")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
