"""The store's write-behind of cards_issued and evaluations, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from cds_service import analytics, server
from cds_service.behind import Flush
from cds_service.protocol import parse_feedback
from cds_service.store import FLUSH_INTERVAL, FeedbackStore, metadata

SERVICE = "injection-billing-encounter-discharge"
CALLS, THREADS, CARDS_PER_CALL = 1000, 8, 3
STOPS = 200



def card(uuid: str, rule: str = "admin-96372") -> dict[str, Any]:
    return {"uuid": uuid, "source": {"topic": {"code": rule}}}


def count(store: FeedbackStore, table: str) -> int:
    with store.engine.connect() as conn:
        n: int = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        return n


def hook_instances(store: FeedbackStore) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.text("SELECT hook_instance FROM evaluations")).scalars())


def write_errors(table: str) -> float:
    return REGISTRY.get_sample_value("cds_store_write_errors_total", {"table": table}) or 0.0


def eventually(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def overridden(card_uuid: str) -> list[Any]:
    return parse_feedback({"feedback": [{"card": card_uuid, "outcome": "overridden",
                                         "outcomeTimestamp": "2026-11-27T00:17:15Z"}]})


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(json.loads(record.getMessage()))


def test_1000_calls_from_8_threads_are_all_written(store: FeedbackStore) -> None:
    def call(n: int) -> None:
        store.record_cards(SERVICE, f"hi-{n}", [card(f"card-{n}-{k}") for k in range(CARDS_PER_CALL)])
        store.record_evaluation(SERVICE, f"hi-{n}", 200, 1.5, ["admin-96372"], [f"card-{n}-0"])

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(call, range(CALLS)))
    assert store.flush()
    assert count(store, "cards_issued") == CALLS * CARDS_PER_CALL
    assert count(store, "evaluations") == CALLS


def test_evaluation_rows_are_all_there_after_dispose(store_url: str) -> None:
    writer = FeedbackStore(store_url, flush_interval=30)  # nothing is written on the writer's own clock
    writer.create_schema()
    for n in range(300):
        writer.record_evaluation(SERVICE, f"hi-{n}", 200, 1.0, [], [])
    writer.dispose()
    reader = FeedbackStore(store_url)
    try:
        assert count(reader, "evaluations") == 300
        assert writer.writer.thread is None
    finally:
        reader.dispose()


def test_rows_still_queued_at_exit_are_written(store_url: str) -> None:
    program = (
        "from cds_service.store import FeedbackStore\n"
        f"s = FeedbackStore({store_url!r}, flush_interval=30)\n"
        "s.create_schema()\n"
        "s.record_evaluation('svc', 'first', 200, 1.0, [], [])\n"
        "assert s.flush()\n"
        "s.record_evaluation('svc', 'at-exit', 200, 1.0, [], [])  # the next write is 30 s away: atexit does it\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
    reader = FeedbackStore(store_url)
    try:
        assert hook_instances(reader) == ["at-exit", "first"]
    finally:
        reader.dispose()


def test_gunicorn_worker_exit_writes_the_queued_rows(store_url: str) -> None:
    store = FeedbackStore(store_url, flush_interval=30)
    try:
        store.create_schema()
        store.record_evaluation(SERVICE, "first", 200, 1.0, [], [])
        assert store.flush()
        store.record_evaluation(SERVICE, "queued", 200, 1.0, [], [])
        server.worker_exit(None, None)
        assert hook_instances(store) == ["first", "queued"]
    finally:
        store.dispose()


def test_duplicate_cards_are_still_ignored(store: FeedbackStore) -> None:
    store.record_cards(SERVICE, "hi-1", [card("card-1"), card("card-1")])  # twice in one call
    store.record_cards(SERVICE, "hi-2", [card("card-1", "dose-missing"), card("card-2")])  # and in one batch
    assert store.flush()
    store.record_cards(SERVICE, "hi-3", [card("card-2", "dose-missing")])  # and in a later batch
    assert store.flush()
    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT card_uuid, rule_id FROM cards_issued")).all())
    assert rows == {"card-1": "admin-96372", "card-2": "admin-96372"}  # the first one written stays


def test_the_writer_survives_a_dropped_table(store: FeedbackStore) -> None:
    store.record_evaluation(SERVICE, "before", 200, 1.0, [], [])
    assert store.flush()
    thread = store.writer.thread
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE evaluations"))
    errors = write_errors("evaluations")
    handler = Collect()
    logging.getLogger("cds_service.store").addHandler(handler)
    try:
        store.record_evaluation(SERVICE, "lost", 200, 1.0, [], [])
        assert store.flush()
    finally:
        logging.getLogger("cds_service.store").removeHandler(handler)
    assert write_errors("evaluations") == errors + 2  # the write and its one retry, then the batch is dropped
    assert [(e["event"], e["table"], e["rows"], e["dropped"]) for e in handler.events] == [
        ("store_write_failed", "evaluations", 1, False), ("store_write_failed", "evaluations", 1, True)]
    assert "lost" not in json.dumps(handler.events)

    metadata.tables["evaluations"].create(store.engine)
    store.record_evaluation(SERVICE, "after", 200, 1.0, [], [])
    assert store.flush()
    assert hook_instances(store) == ["after"]
    assert store.writer.thread is thread and thread.is_alive()


def test_one_row_the_database_refuses_costs_only_itself(store: FeedbackStore) -> None:
    rows = [{"service": SERVICE, "hook_instance": hi, "evaluated_at": dt.datetime.now(dt.UTC), "duration_ms": 1.0,
             "status": 200, "rules_fired": "[]", "card_uuids": "[]"} for hi in ("good-1", "bad-\ud800", "good-2")]
    store.writer.put_rows(metadata.tables["evaluations"], rows)  # one batch, as three calls in one flush interval
    assert store.flush()
    assert sorted(hook_instances(store)) == ["good-1", "good-2"]


def test_rows_wait_for_an_unreachable_database_and_a_stop_gives_up_on_them() -> None:
    s = FeedbackStore("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=3", flush_interval=0.01)
    handler = Collect()
    logging.getLogger("cds_service.store").addHandler(handler)
    try:
        errors = write_errors("cards_issued")
        s.record_cards(SERVICE, "hi-1", [card("card-1")])
        s.record_cards(SERVICE, "hi-2", [card("card-2")])
        assert not s.flush(timeout=1.0)  # not written, not dropped: the rows wait for the database
        assert write_errors("cards_issued") > errors
        assert s.writer.thread is not None and s.writer.thread.is_alive()
        assert sum(len(item[1]) for item in s.writer.queue if isinstance(item, tuple)) == 2
        assert s.writer.stop(timeout=0.5)  # the process going: after the stop's timeout, they are given up
        assert s.writer.thread is None and not s.writer.queue
        assert [e["rows"] for e in handler.events if e["event"] == "store_rows_dropped_at_exit"] == [2]
    finally:
        logging.getLogger("cds_service.store").removeHandler(handler)
        s.dispose()


def test_a_full_queue_sheds_rows_counts_them_and_warns_once(
    store: FeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store.writer, "max_queued", 3)
    handler = Collect()
    logging.getLogger("cds_service.store").addHandler(handler)
    try:
        store.flush()
        store.writer.flush_interval = 5.0  # at most one write meanwhile: the queue fills
        before = REGISTRY.get_sample_value("cds_store_rows_shed_total", {"table": "evaluations"}) or 0
        for n in range(10):
            store.record_evaluation(SERVICE, f"call-{n}", 200, 1.0, [], [])
            assert len(store.writer.queue) <= 3  # never more than the bound
        shed = (REGISTRY.get_sample_value("cds_store_rows_shed_total", {"table": "evaluations"}) or 0) - before
        assert store.flush()
        assert len(hook_instances(store)) + shed == 10 and shed >= 5  # every row written or counted as shed
        assert [e["event"] for e in handler.events].count("store_queue_full") == 1
    finally:
        logging.getLogger("cds_service.store").removeHandler(handler)


def test_a_nul_in_a_hook_instance_is_stored_as_a_replacement_character(store: FeedbackStore) -> None:
    store.record_evaluation(SERVICE, "nul-\x00-here", 200, 1.0, [], [])
    store.record_cards(SERVICE, "nul-\x00-here", [card("card-nul")])
    assert store.flush()
    assert hook_instances(store) == ["nul-\ufffd-here"]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_writes_its_own_rows_and_not_the_parents(store_url: str) -> None:
    store = FeedbackStore(store_url, flush_interval=5)
    try:
        store.create_schema()
        store.record_evaluation(SERVICE, "parent-1", 200, 1.0, [], [])
        assert store.flush()
        store.record_evaluation(SERVICE, "parent-2", 200, 1.0, [], [])  # still queued: the next write is 5 s away
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                store.record_evaluation(SERVICE, "child", 200, 1.0, [], [])
                store.record_cards(SERVICE, "child", [card("card-child")])
                code = 0 if store.flush(timeout=30) else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert store.flush()
        assert hook_instances(store) == ["child", "parent-1", "parent-2"]
        assert count(store, "cards_issued") == 1
    finally:
        store.dispose()


def test_reads_flush_what_this_process_queued(store: FeedbackStore, store_url: str) -> None:
    slow = FeedbackStore(store_url, flush_interval=30)
    try:
        slow.record_cards(SERVICE, "hi-1", [card("card-1")])
        assert slow.flush()
        slow.record_cards(SERVICE, "hi-2", [card("card-2", "dose-missing")])  # queued: the next write is 30 s away
        assert [(s.rule, s.shown) for s in analytics.rule_report(slow.engine)] == [
            ("admin-96372", 1), ("dose-missing", 1)]
        slow.record_cards(SERVICE, "hi-3", [card("card-3", "route-missing")])
        assert slow.add_feedback(SERVICE, overridden("card-3")) == 1
        assert [r["rule_id"] for r in store.feedback_for("card-3")] == ["route-missing"]
    finally:
        slow.dispose()


def test_feedback_before_the_other_instance_wrote_its_card_counts_under_the_card_rule(store_url: str) -> None:
    issuing, receiving = FeedbackStore(store_url), FeedbackStore(store_url)
    try:
        issuing.create_schema()
        # The EHR's feedback reaches the other instance before the issuing one has written its log row.
        assert receiving.add_feedback(SERVICE, overridden("card-1")) == 1
        assert receiving.add_feedback(SERVICE, overridden("never-issued")) == 1
        issuing.record_cards(SERVICE, "hi-1", [card("card-1", "dose-missing")])
        assert issuing.flush()
        report = {s.rule: (s.shown, s.overridden) for s in analytics.rule_report(receiving.engine)}
        assert report == {"dose-missing": (1, 1), "(unknown card)": (0, 1)}
        assert [r["rule_id"] for r in receiving.feedback_for("card-1")] == ["dose-missing"]
        assert [r["rule_id"] for r in receiving.feedback_for("never-issued")] == [None]
    finally:
        issuing.dispose()
        receiving.dispose()


def test_a_stop_that_timed_out_does_not_leave_the_writer_dead(store: FeedbackStore) -> None:
    store.record_evaluation(SERVICE, "first", 200, 1.0, [], [])
    assert store.flush()
    store.writer.stop(0.0)  # gives up at once: the thread ends later, when it reaches the stop marker
    if store.writer.thread is not None:
        store.writer.thread.join(5)
    store.record_evaluation(SERVICE, "after the stop", 200, 1.0, [], [])
    assert store.flush(timeout=5)
    assert sorted(hook_instances(store)) == ["after the stop", "first"]


def test_a_put_while_the_thread_ends_after_a_stop_is_written_without_another_call(store: FeedbackStore) -> None:
    writer = store.writer
    taken, resume = threading.Event(), threading.Event()
    write = writer.write_batch

    def write_slowly_after_a_stop(batch: list[Any]) -> bool:
        if any(isinstance(item, Flush) and item.stop for item in batch):
            taken.set()  # the thread has taken the stop marker and has not ended yet
            resume.wait(5)
        return write(batch)

    writer.write_batch = write_slowly_after_a_stop  # type: ignore[method-assign]
    store.record_evaluation(SERVICE, "before", 200, 1.0, [], [])
    assert store.flush()
    stopping = threading.Thread(target=writer.stop, args=(5.0,))
    stopping.start()
    assert taken.wait(5)
    store.record_evaluation(SERVICE, "during the stop", 200, 1.0, [], [])
    resume.set()
    stopping.join(5)
    # No flush and no other put: the ending thread writes the row, or a new one does.
    assert eventually(lambda: hook_instances(store) == ["before", "during the stop"])


def test_puts_racing_stops_lose_no_row_and_write_none_twice(store: FeedbackStore) -> None:
    queued, enough = [0], threading.Event()

    def put_until_enough() -> None:
        while not enough.is_set():
            store.record_evaluation(SERVICE, f"hi-{queued[0]}", 200, 1.0, [], [])
            queued[0] += 1
            if queued[0] % 10 == 0:
                time.sleep(0.001)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave between nearly every bytecode: the race is run, not skipped
    putting = threading.Thread(target=put_until_enough)
    putting.start()
    try:
        for _ in range(STOPS):
            before = queued[0]
            assert store.writer.stop(5)
            assert count(store, "evaluations") >= before  # what was queued before a stop is written when it returns
    finally:
        enough.set()
        putting.join()
        sys.setswitchinterval(switch)
    assert eventually(lambda: count(store, "evaluations") >= queued[0])  # without a flush: no row left behind
    assert count(store, "evaluations") == queued[0]


def test_an_idle_writer_sleeps_and_wakes_for_the_next_row(store: FeedbackStore) -> None:
    store.record_evaluation(SERVICE, "first", 200, 1.0, [], [])
    assert store.flush()
    time.sleep(5 * FLUSH_INTERVAL)  # nothing queued for more than an interval: the thread sleeps until woken
    cpu = time.process_time()
    time.sleep(0.5)
    assert time.process_time() - cpu < 0.1  # it does not spin
    store.record_evaluation(SERVICE, "after a quiet spell", 200, 1.0, [], [])
    assert eventually(lambda: hook_instances(store) == ["after a quiet spell", "first"])
