"""Logs as JSON lines on stderr: one object per event, never a token, a JWT or patient data.

Lines are written in batches (BatchedStreamHandler): an info line reaches stderr within FLUSH_INTERVAL, a
warning or an error at once."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import weakref
from typing import Any, TextIO

import orjson

from cds_service.behind import Behind

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
        extra = {name: getattr(record, name) for name in EXTRA_FIELDS if getattr(record, name, None) is not None}
        return json_line(record.created, record.msecs, record.levelname, record.name, event, extra)


def json_line(created: float, msecs: float, level: str, logger: str, event: dict[str, Any],
              extra: dict[str, Any] | None = None) -> str:
    """One log line: the time, level and logger, then the event's fields, then the record's extra fields."""
    return dumps({"time": stamp(created, msecs), "level": level.lower(), "logger": logger, **event, **(extra or {})})


_second: tuple[int, str] = (-1, "")  # the last second stamped, and its text


def stamp(created: float, msecs: float) -> str:
    """'2026-11-27T15:04:05.123Z' (UTC) for a time.time() and its milliseconds, as a LogRecord holds them."""
    global _second
    whole = int(created)
    second = _second
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{int(msecs):03d}Z"


def dumps(event: dict[str, Any]) -> str:
    """One JSON line, by orjson (a tenth of json.dumps' time): UTF-8 as is, datetimes in ISO form, anything
    else JSON has no type for as its text; json.dumps only for what orjson refuses."""
    try:
        return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # beyond orjson: a number past 64 bits, a nesting past 255
        return json.dumps(event, default=str)


FLUSH_INTERVAL = 0.1  # seconds an info line may wait in memory before it is written
MAX_PENDING = 256  # lines: this many are written at once


class LineWriter(Behind[str]):
    """The lines of one BatchedStreamHandler, written behind (cds_service.behind): a batch in one write()."""

    name = "log-writer"
    linger = True  # the first line after a quiet spell waits the interval for the lines that follow it

    def __init__(self, handler: BatchedStreamHandler, interval: float, max_pending: int) -> None:
        # Never more than max_pending queued: the handler writes them itself then (max_queued is a mere guard).
        super().__init__(interval, batch_items=max_pending, max_queued=max_pending * 4)
        self.handler = weakref.ref(handler)

    def write(self, batch: list[str]) -> bool:
        """One write() for the batch; a batch the stream refuses is dropped (closed, a broken pipe: there is
        nowhere left to say so)."""
        handler = self.handler()
        if handler is None:
            return False
        try:
            handler.stream.write("".join(batch))
            if hasattr(handler.stream, "flush"):
                handler.stream.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: S110 - the lines have nowhere else to go
            pass
        return False

    def shed(self, item: str) -> None:
        self.drain()  # not expected (the handler drains at max_pending): written now rather than lost
        self.put(item)


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes the lines of FLUSH_INTERVAL in one write() instead of one write() each.

    A write to a log file is a system call that costs a worker more than formatting the line: one per hook
    call was 2 to 3% of the call's CPU under `cds-service serve` on this project's host (benchmarks/ab.py). A
    line is formatted when it is logged (its time is the event's) and queued; the process's writer thread
    (behind.Behind) writes the queue once per interval when there is one. A warning or an error is written at
    once, after the lines queued before it, and so is a queue of MAX_PENDING lines. A clean exit writes what
    is queued (logging's own shutdown flushes every handler; gunicorn's worker_exit too); a process killed
    outright (SIGKILL) loses at most its last FLUSH_INTERVAL of info lines. What is queued is written before
    the process forks, and a forked child starts with an empty queue and its own thread. As with logging's own
    handlers, a failure never reaches the code that logs: a line that cannot be formatted goes to handleError,
    and a batch the stream refuses is dropped."""

    def __init__(self, stream: TextIO, interval: float = FLUSH_INTERVAL, max_pending: int = MAX_PENDING) -> None:
        super().__init__(stream)
        self.max_pending = max_pending
        self.writer = LineWriter(self, interval, max_pending)
        self.closed = False  # once closed, every line is written at once
        HANDLERS.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue one line (logging calls this under the handler's lock)."""
        try:
            self.queue(self.format(record), record.levelno)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def queue(self, line: str, level: int) -> None:
        """Queue one formatted line, of this level; written at once from WARNING up or at max_pending."""
        writer = self.writer
        if self.closed:  # every line at once, and no thread started again
            writer.write([line + self.terminator])
            return
        writer.put(line + self.terminator)
        if level >= logging.WARNING or len(writer.queue) >= self.max_pending:
            writer.drain()

    def flush(self) -> None:
        """Write every queued line now, in one write()."""
        self.writer.drain()

    def close(self) -> None:
        """Write what is queued; from now on every line is written at once, and the thread ends."""
        self.closed = True
        self.writer.drain()
        self.writer.stop(1.0)
        super().close()


HANDLERS: weakref.WeakSet[BatchedStreamHandler] = weakref.WeakSet()


def info(logger: logging.Logger, event: dict[str, Any]) -> None:
    """logger.info(Event(event)), in a fraction of its time where configure()'s setup is in force.

    A log call runs once per request, with the interpreter's caches cold: logging's record, handler and
    formatter steps cost a hook call about 30 us, against 6 us in a loop. When this logger's records go to one
    BatchedStreamHandler with the JsonFormatter and nothing else (no filter, no other handler, logging's own
    record factory), the same line is formatted here and queued on that handler; any other setup gets
    logger.info itself. Like logging, it never raises: a failure goes to logger.info, whose handler reports it."""
    handler = sole_handler(logger)
    if handler is not None:
        try:
            created = time.time()
            line = json_line(created, (created - int(created)) * 1000, logging.getLevelName(logging.INFO),
                             logger.name, event)
            handler.queue(line, logging.INFO)
            return
        except RecursionError:
            raise
        except Exception:  # noqa: S110 - logging's own path below says what went wrong
            pass
    logger.info(Event(event))


def sole_handler(logger: logging.Logger) -> BatchedStreamHandler | None:
    """The one handler an INFO record of this logger would reach, when it is configure()'s kind and nothing
    would filter or add to the record on its way; else None."""
    if (logger.disabled or logger.filters or not logger.isEnabledFor(logging.INFO)
            or logging.getLogRecordFactory() is not logging.LogRecord):
        return None
    found: BatchedStreamHandler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if (found is not None or type(handler) is not BatchedStreamHandler or handler.filters
                    or type(handler.formatter) is not JsonFormatter or handler.level > logging.INFO):
                return None
            found = handler
        node = node.parent if node.propagate else None
    return found


def flush() -> None:
    """Write every queued line of this process now."""
    for handler in list(HANDLERS):
        handler.flush()


# Before a fork: the queued lines are written by the parent, so that none is lost with the child's fresh queue
# and none is written twice (gunicorn forks its workers from a master that logs).
os.register_at_fork(before=flush)


def configure(*, batched: bool = True) -> None:
    """Give the service's loggers one JSON handler on stderr: a BatchedStreamHandler, or with batched=False (a
    gunicorn master, which forks its workers and so keeps no writer thread) a plain StreamHandler. A process
    that already has one of the other kind (a worker forked from that master) gets this kind instead."""
    logger = logging.getLogger("cds_service")
    logger.setLevel(logging.INFO)
    kind = BatchedStreamHandler if batched else logging.StreamHandler
    ours = [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]
    if ours and all(type(h) is kind for h in ours):
        return
    for old in ours:
        logger.removeHandler(old)
        old.close()  # writes what it queued; a StreamHandler leaves its stream open
    handler = kind(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
