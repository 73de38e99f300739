"""The log handler writes its lines in batches: an info line within the flush interval, a warning at once."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from flask.testing import FlaskClient

from cds_service.web import logs
from cds_service.web.logs import BatchedStreamHandler, Event, JsonFormatter
from tests.conftest import load_scenario


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(f"test-batches.{name}")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler.setFormatter(JsonFormatter())
    return logger


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_info_lines_go_out_together_within_the_interval() -> None:
    stream = CountingStream()
    log = logger_with(BatchedStreamHandler(stream, interval=1.0), "info")
    for n in range(3):
        log.info(Event({"event": "hook", "n": n}))
    assert stream.getvalue() == ""  # queued, not yet written
    assert wait_for(lambda: len(lines(stream)) == 3)
    assert [line["n"] for line in lines(stream)] == [0, 1, 2]
    assert stream.writes == 1
    log.info(Event({"event": "hook", "n": 3}))  # the thread writes the next interval's lines too
    assert wait_for(lambda: len(lines(stream)) == 4) and stream.writes == 2


def test_the_writer_goes_on_after_a_refused_write_and_after_its_thread_ends() -> None:
    """A batch the stream refuses is dropped, nothing reaches the caller, and the next lines are written; a
    writer thread that is gone (here: never started) is started again by the next line."""
    class FailsOnce(CountingStream):
        failed = False

        def write(self, text: str) -> int:
            if not self.failed:
                self.failed = True
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    stream = FailsOnce()
    handler = BatchedStreamHandler(stream, interval=0.05)
    log = logger_with(handler, "refused")
    log.info(Event({"event": "lost"}))
    assert wait_for(lambda: stream.failed)
    log.info(Event({"event": "kept"}))
    assert wait_for(lambda: [line["event"] for line in lines(stream)] == ["kept"])
    assert handler.writer.stop(5) and handler.writer.thread is None  # its thread ends
    log.info(Event({"event": "again"}))
    assert wait_for(lambda: [line["event"] for line in lines(stream)] == ["kept", "again"])


def test_a_closed_handler_writes_at_once_and_its_thread_ends() -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=60)
    log = logger_with(handler, "closed")
    log.info(Event({"event": "queued"}))
    thread = handler.writer.thread
    handler.close()  # as logging.shutdown does at exit
    assert [line["event"] for line in lines(stream)] == ["queued"]
    log.info(Event({"event": "after"}))
    assert [line["event"] for line in lines(stream)] == ["queued", "after"]
    assert thread is not None and wait_for(lambda: not thread.is_alive())


def test_a_warning_is_written_at_once_after_the_lines_before_it() -> None:
    stream = CountingStream()
    log = logger_with(BatchedStreamHandler(stream, interval=60), "warning")
    log.info(Event({"event": "hook", "n": 1}))
    log.error(Event({"event": "store_write_failed"}))
    assert [(line["level"], line["event"]) for line in lines(stream)] == [("info", "hook"),
                                                                         ("error", "store_write_failed")]
    assert stream.writes == 1


def test_a_full_queue_is_written_at_once() -> None:
    stream = CountingStream()
    log = logger_with(BatchedStreamHandler(stream, interval=60, max_pending=4), "full")
    for n in range(9):
        log.info(Event({"event": "hook", "n": n}))
    assert [line["n"] for line in lines(stream)] == list(range(8)) and stream.writes == 2


def test_a_failing_stream_drops_the_lines_and_logging_goes_on() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    handler = BatchedStreamHandler(Broken(), interval=60)
    log = logger_with(handler, "broken")
    log.error(Event({"event": "one"}))
    log.error(Event({"event": "two"}))  # no exception reaches the caller
    assert not handler.writer.queue  # the refused batches are dropped, not kept to grow
    good = CountingStream()
    handler.setStream(good)
    log.error(Event({"event": "three"}))
    assert [line["event"] for line in lines(good)] == ["three"]


def test_a_forked_child_writes_its_own_lines_and_not_its_parents(tmp_path: Path) -> None:
    """gunicorn forks its workers from a master that logs: each line is written once, by its own process,
    with the child's thread (here the child ends by os._exit, which skips logging's flush at exit). A line
    queued after the flush that precedes a fork (by another thread, here by an earlier-registered fork hook,
    which runs after it) is the parent's alone."""
    out = tmp_path / "log.txt"
    script = textwrap.dedent(f"""
        import logging, os, sys, time
        late = []
        os.register_at_fork(before=lambda: late and late[0].info(late[1]({{"event": "parent-at-fork"}})))
        from cds_service.web import logs
        stream = open({str(out)!r}, "a", buffering=1)
        handler = logs.BatchedStreamHandler(stream, interval=0.05)
        handler.setFormatter(logs.JsonFormatter())
        log = logging.getLogger("fork-test")
        log.addHandler(handler); log.setLevel(logging.INFO); log.propagate = False
        log.info(logs.Event({{"event": "parent-before-fork"}}))
        late[:] = [log, logs.Event]
        pid = os.fork()
        if pid == 0:
            log.info(logs.Event({{"event": "child"}}))
            time.sleep(0.5)
            os._exit(0)
        os.waitpid(pid, 0)
        log.info(logs.Event({{"event": "parent-after-fork"}}))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    events = [json.loads(line)["event"] for line in out.read_text().splitlines()]
    assert sorted(events) == ["child", "parent-after-fork", "parent-at-fork", "parent-before-fork"]
    assert events.index("parent-before-fork") < events.index("child")


def test_the_short_path_writes_the_line_logging_would() -> None:
    """logs.info formats and queues the line itself under configure()'s setup: the same keys, values and order
    as logger.info(Event(...)) through the handler (the time aside, which is the call's)."""
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=60)
    logger_with(handler, "short")
    child = logging.getLogger("test-batches.short.requests")  # propagates to the handler above
    event = {"event": "hook", "service": "s", "hookInstance": None, "status": 200, "rules": ["a", "b"], "é": "ü"}
    assert logs.sole_handler(child) is handler
    logs.info(child, event)
    child.info(Event(event))
    handler.flush()
    short, standard = (json.loads(line) for line in stream.getvalue().splitlines())
    assert list(short) == list(standard) and {**short, "time": ""} == {**standard, "time": ""}
    assert short["logger"] == "test-batches.short.requests" and short["level"] == "info"
    assert abs(time.mktime(time.strptime(short["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(
        time.strptime(standard["time"][:19], "%Y-%m-%dT%H:%M:%S"))) <= 1
    assert not handler.writer.queue  # nothing left over, nothing written twice
    assert stream.writes == 1


def test_any_other_setup_gets_logging_itself() -> None:
    """A level above INFO, a filter, a second handler or another formatter: the short path steps aside."""
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=60)
    log = logger_with(handler, "other")
    log.setLevel(logging.WARNING)
    assert logs.sole_handler(log) is None
    logs.info(log, {"event": "dropped"})
    log.setLevel(logging.INFO)
    log.addFilter(lambda record: False)
    assert logs.sole_handler(log) is None
    logs.info(log, {"event": "filtered"})
    log.filters.clear()
    extra = io.StringIO()
    log.addHandler(logging.StreamHandler(extra))
    assert logs.sole_handler(log) is None
    logs.info(log, {"event": "both"})
    handler.flush()
    assert [line["event"] for line in lines(stream)] == ["both"] and '"both"' in extra.getvalue()
    log.handlers = [handler]
    handler.setLevel(logging.WARNING)
    assert logs.sole_handler(log) is None
    handler.setLevel(logging.NOTSET)
    handler.addFilter(lambda record: True)
    assert logs.sole_handler(log) is None
    handler.filters.clear()
    handler.setFormatter(logging.Formatter("%(message)s"))
    assert logs.sole_handler(log) is None


def test_a_time_stamp_is_the_formatters_for_every_millisecond() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None)
    for created in (0.0, 1.0005, 1_764_000_000.999, 1_764_000_001.0, 1_764_000_000.5):
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(record.msecs):03d}Z"
        assert logs.stamp(created, record.msecs) == expected


def test_a_hook_calls_access_line_takes_the_short_path(client: FlaskClient) -> None:
    """Under configure()'s setup (create_app), the access log line of a call is the batching handler's, with
    what it always said."""
    log = logging.getLogger("cds_service.requests")
    handler = logs.sole_handler(log)
    assert isinstance(handler, BatchedStreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        request = load_scenario("01")["request"]
        assert client.post("/cds-services/injection-billing-encounter-discharge", json=request).status_code == 200
        handler.flush()
    finally:
        handler.setStream(previous)  # type: ignore[arg-type]
    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if '"event":"hook"' in x]
    assert line["logger"] == "cds_service.requests" and line["level"] == "info" and line["status"] == 200
    assert line["hookInstance"] == request["hookInstance"] and line["rules"] == ["admin-96372", "drug-waste-modifier"]


def test_after_a_quiet_spell_the_first_line_still_waits_for_the_next() -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=0.3)
    log = logger_with(handler, "linger")
    log.info(Event({"event": "first"}))
    assert wait_for(lambda: len(lines(stream)) == 1) and wait_for(lambda: handler.writer.idle)
    log.info(Event({"event": "after-quiet"}))
    time.sleep(0.05)
    log.info(Event({"event": "soon-after"}))
    assert wait_for(lambda: len(lines(stream)) == 3)
    assert stream.writes == 2  # the two lines after the quiet spell went out together


def test_a_closed_handler_starts_no_thread_again() -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream, interval=60)
    log = logger_with(handler, "closed-again")
    log.info(Event({"event": "before"}))
    handler.close()
    log.info(Event({"event": "after"}))
    assert [line["event"] for line in lines(stream)] == ["before", "after"]
    assert handler.writer.thread is None and not handler.writer.running


def test_a_drain_that_cannot_write_keeps_what_it_could_not() -> None:
    from cds_service.behind import Behind

    class Down(Behind[str]):
        def write(self, batch: list[str]) -> bool:
            return True  # the destination does not answer

    down = Down(60, batch_items=10, max_queued=10)
    down.start = lambda: False  # type: ignore[method-assign]  # no thread to be had, as at interpreter exit
    down.put("a")
    down.put("b")
    assert not down.flush(1.0)
    assert [item for item in down.queue if isinstance(item, str)] == ["a", "b"]
