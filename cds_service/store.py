"""The store: issued cards, feedback and the evaluation log, in SQLite or PostgreSQL through SQLAlchemy Core.

`metadata` is the one definition of the tables the queries use; the schema itself is made by the Alembic
migrations in cds_service/migrations, which a test keeps identical to `metadata`.

Feedback and the JWT replay cache are written before the call returns. The two logs written on every hook call
(cards_issued, evaluations) are written behind (cds_service.behind): a per-process thread writes what is queued
in one transaction per table, at most every `flush_interval` seconds, so a hook call never waits on the
database. A clean exit flushes the queue; a crash (SIGKILL) loses at most the last `flush_interval` of those two
logs, never feedback.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url

from cds_service import metrics, migrations
from cds_service.behind import Behind
from cds_service.errors import StoreUnavailable
from cds_service.protocol import FeedbackEntry

log = logging.getLogger("cds_service.store")
metadata = sa.MetaData()

cards_issued = sa.Table(
    "cards_issued",
    metadata,
    sa.Column("card_uuid", sa.String(64), primary_key=True),
    sa.Column("service", sa.String(128), nullable=False),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("hook_instance", sa.String(256), nullable=False),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("card_uuid", sa.String(256), nullable=False),
    sa.Column("service", sa.String(128), nullable=False),
    sa.Column("rule_id", sa.String(64)),  # None when the card was not issued by this store
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("accepted_suggestions", sa.Text, nullable=False, default="[]"),
    sa.Column("override_code", sa.String(256)),
    sa.Column("override_system", sa.String(1024)),
    sa.Column("override_display", sa.String(1024)),
    sa.Column("user_comment", sa.Text),
    sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    # The spec lets a client send the same feedback more than once: store it once.
    sa.UniqueConstraint("card_uuid", "service", "outcome", "outcome_timestamp", name="uq_feedback_event"),
)
sa.Index("ix_feedback_rule", feedback.c.rule_id, feedback.c.outcome_timestamp)

# JWT ids seen, so a token is accepted once across workers and instances sharing the store.
jwt_seen = sa.Table(
    "jwt_seen",
    metadata,
    sa.Column("iss", sa.String(512), primary_key=True),
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# Wrong console tokens by client address: the console's login lockout, shared by every worker and instance.
console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_console_login_failures_address", console_login_failures.c.address, console_login_failures.c.failed_at)
sa.Index("ix_console_login_failures_failed_at", console_login_failures.c.failed_at)

# One row per service call, successful or not. No patient identifiers: ids of rules and cards only.
evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("hook_instance", sa.String(256)),  # None when the request had none
    sa.Column("service", sa.String(128), nullable=False),
    sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("rules_fired", sa.Text, nullable=False),  # JSON list of rule ids
    sa.Column("card_uuids", sa.Text, nullable=False),  # JSON list of the uuids of the cards returned
    sa.Column("repairs", sa.Text),  # JSON list: near-misses of R4 repaired ("MedicationRequest at where: what")
    sa.Column("refusal", sa.String(256)),  # why a call was refused (401, 403), never the token
)
sa.Index("ix_evaluations_evaluated_at", evaluations.c.evaluated_at)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(moment: dt.datetime) -> dt.datetime:
    """A stored time in UTC: SQLite gives back the UTC time it was given, without its zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def make_engine(url: str) -> Engine:
    """An engine for the store URL; a SQLite file's folder is created on demand."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
            use_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable across crashes, one fsync per checkpoint
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


SQLITE_BUSY_SECONDS = 15


def use_wal(cur: Any) -> None:
    """Put a SQLite file in WAL mode (it stays so). The switch needs the file to itself, and SQLite answers
    "database is locked" at once, without its busy timeout, while another connection writes: as when the
    workers of `cds-service serve` start together on a new file. So it is tried again until the timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # sqlite3.OperationalError, as the driver raises it
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


FLUSH_INTERVAL = 0.05  # seconds: the log writer writes at most this often, unless a batch is large or flushed
BATCH_ITEMS = 200  # queued calls (each a few rows) that are written at once
FLUSH_TIMEOUT = 5.0
FEEDBACK_FLUSH_TIMEOUT = 1.0  # feedback waits this long at most for the card rows queued before it
MAX_QUEUED = 20_000  # queued calls at most (some 10 MB); beyond, new rows are shed and counted, never grown
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)  # waits between tries while the database does not answer, then every 5 s
SHED_WARNING_SECONDS = 60.0  # one warning per this long while rows are being shed


def insert_ignoring_duplicates(engine: Engine, table: sa.Table) -> Any:
    """INSERT that skips rows a unique constraint already holds, in the engine's dialect."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


Queued = tuple[sa.Table, list[dict[str, Any]]]  # a call's rows of one table


class LogWriter(Behind[Queued]):
    """The write-behind of one store in this process (behind.Behind): a batch is one transaction per table;
    while the database does not answer its rows wait (and feedback, /healthz, say 503); a row it refuses costs
    only itself."""

    name = "store-writer"
    retry_seconds = RETRY_SECONDS

    def __init__(self, engine: Engine, flush_interval: float) -> None:
        super().__init__(flush_interval, batch_items=BATCH_ITEMS, max_queued=MAX_QUEUED)
        self.engine = engine
        self.shed_rows = 0  # rows not queued since the process started (the queue was full)
        self.shed_warned = -math.inf

    def put_rows(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.put((table, rows))

    def shed(self, item: Queued) -> None:
        table, rows = item[0], len(item[1])
        metrics.count_store_rows_shed(table.name, rows)
        self.shed_rows += rows
        moment = time.monotonic()
        if moment - self.shed_warned >= SHED_WARNING_SECONDS:
            self.shed_warned = moment
            log.warning(json.dumps({"event": "store_queue_full", "table": table.name, "queued": len(self.queue),
                                    "shed_rows": self.shed_rows}))

    def dropped(self, items: list[Queued]) -> None:
        log.error(json.dumps({"event": "store_rows_dropped_at_exit", "rows": sum(len(rows) for _, rows in items),
                              "reason": "the database did not answer before the stop's timeout"}))

    def after_fork(self) -> None:
        self.engine.dispose(close=False)  # the parent's connections stay the parent's

    def write(self, batch: list[Queued]) -> bool:
        """Write a batch, table by table, taking each table's rows out of it once written; True when the
        database did not answer: what is left in the batch waits and is tried again (none written twice)."""
        for table in list(dict.fromkeys(item[0] for item in batch)):
            rows = [row for item in batch if item[0] is table for row in item[1]]
            if self.write_table(table, rows):
                return True
            batch[:] = [item for item in batch if item[0] is not table]
        return False

    def write_table(self, table: sa.Table, rows: list[dict[str, Any]]) -> bool:
        """One transaction. When the database does not answer, True: the rows wait. When it refuses them
        (a bad row), row by row, so one bad row costs only itself. Never raises: the thread must live on."""
        error = self.insert(table, rows)
        if error is not None and not unreachable(error):
            self.log_failure(table, len(rows), 1, error, dropped=False)
            time.sleep(self.flush_interval)
            error = self.insert(table, rows)
        if error is None:
            return False
        if unreachable(error):
            if self.retries & (self.retries + 1) == 0:  # tries 1, 2, 4, 8 ...: logged, not every few seconds
                self.log_failure(table, len(rows), self.retries + 1, error, dropped=False)
            return True
        self.log_failure(table, len(rows), 2, error, dropped=len(rows) == 1)
        if len(rows) > 1:
            errors = [e for e in (self.insert(table, [row]) for row in rows) if e is not None]
            if errors:
                self.log_failure(table, len(errors), 3, errors[0], dropped=True)
        return False

    def insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> Exception | None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert_ignoring_duplicates(self.engine, table), rows)
            return None
        except Exception as exc:
            metrics.count_store_write_error(table.name)
            return exc

    @staticmethod
    def log_failure(table: sa.Table, rows: int, attempt: int, exc: Exception, *, dropped: bool) -> None:
        cause = getattr(exc, "orig", None) or exc  # the driver's message, without statement or parameters
        log.error(json.dumps({
            "event": "store_write_failed",
            "table": table.name,
            "rows": rows,
            "attempt": attempt,
            "dropped": dropped,
            "error": type(exc).__name__,
            "detail": str(cause).splitlines()[0][:200] if str(cause) else "",
        }))


def unreachable(exc: BaseException) -> bool:
    """The database does not answer: no connection could be made (down, restarting, the network), or the one in
    use broke. Not a statement it refused (a bad row, a missing table), which trying again would not mend."""
    if isinstance(exc, sa.exc.DBAPIError):
        return exc.connection_invalidated or (
            exc.statement is None and isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError))
    return isinstance(exc, sa.exc.DisconnectionError)


live_stores: weakref.WeakSet[FeedbackStore] = weakref.WeakSet()


def flush_all(timeout: float = FLUSH_TIMEOUT) -> None:
    """Write what every store of this process has queued: at exit, and from gunicorn's worker_exit."""
    for store in list(live_stores):
        store.flush(timeout)


def flush_pending(engine: Engine, timeout: float = FLUSH_TIMEOUT) -> None:
    """Flush the stores writing through this engine: for readers given only the engine (the report)."""
    for store in list(live_stores):
        if store.engine is engine:
            store.flush(timeout)


atexit.register(flush_all)


def storable(text: str) -> str:
    """A text as the database keeps it: a NUL (which PostgreSQL refuses in text) becomes U+FFFD."""
    return text.replace("\x00", "\ufffd")


class ReplayWindow:
    """The JWT ids this process has seen and that have not expired: replay protection that needs no database.
    The store's table extends it across workers and instances; this keeps a replay to the same worker refused
    while the database is down. Bounded: the oldest ids go first past MAX_IDS (a token lives minutes)."""

    MAX_IDS = 100_000

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], dt.datetime] = {}
        self.lock = threading.Lock()

    def claim(self, iss: str, jti: str, expires_at: dt.datetime) -> bool:
        moment = now()
        with self.lock:
            if len(self.seen) >= self.MAX_IDS:
                for key in [k for k, until in self.seen.items() if until < moment] or list(self.seen)[:1000]:
                    del self.seen[key]
            if (iss, jti) in self.seen and self.seen[(iss, jti)] >= moment:
                return False
            self.seen[(iss, jti)] = expires_at
            return True


class FeedbackStore:
    """Cards issued and feedback received, behind one SQLAlchemy URL."""

    def __init__(self, url: str, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.engine = make_engine(url)
        self.writer = LogWriter(self.engine, flush_interval)
        self.window = ReplayWindow()
        live_stores.add(self)

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Block until the log rows queued before the call are written (or dropped); False on timeout."""
        return self.writer.flush(timeout)

    def create_schema(self) -> str:
        """Bring the database to the latest migration (a no-op when it is there); return its revision."""
        return migrations.upgrade(self.engine)

    def ping(self) -> bool:
        """True when the database answers and the tables exist."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(sa.func.count()).select_from(cards_issued).limit(1))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def _insert_ignoring_duplicates(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> int:
        return len(self._insert_new(table, rows, *table.primary_key.columns))

    def _insert_new(
        self, table: sa.Table, rows: Sequence[Mapping[str, Any]], *returning: sa.ColumnElement[Any]
    ) -> list[tuple[Any, ...]]:
        """Insert the rows no unique constraint already holds; return the `returning` columns of those written."""
        if not rows:
            return []
        stmt = insert_ignoring_duplicates(self.engine, table)
        with self.engine.begin() as conn:
            # rowcount is -1 for these inserts under psycopg; take the rows actually written instead.
            return [tuple(row) for row in conn.execute(stmt.returning(*returning), list(rows)).all()]

    def record_cards(self, service: str, hook_instance: str, cards: Iterable[Mapping[str, Any]]) -> None:
        """Queue which rule each card came from, so feedback can be counted per rule (written behind)."""
        issued_at = now()
        self.writer.put_rows(cards_issued, [
            {
                "card_uuid": card["uuid"],
                "service": service,
                "rule_id": card["source"]["topic"]["code"],
                "hook_instance": storable(hook_instance)[:256],
                "issued_at": issued_at,
            }
            for card in cards
        ])

    def add_feedback(self, service: str, entries: Sequence[FeedbackEntry]) -> int:
        """Store feedback entries; return how many were new. StoreUnavailable (503) when the database does not
        answer: nothing is stored, and the EHR sends it again."""
        try:
            return self._add_feedback(service, entries)
        except sa.exc.SQLAlchemyError as exc:
            if unreachable(exc):
                raise StoreUnavailable() from None
            raise

    def _add_feedback(self, service: str, entries: Sequence[FeedbackEntry]) -> int:
        uuids = {e.card for e in entries}
        self.flush(FEEDBACK_FLUSH_TIMEOUT)  # cards this process issued a moment ago
        with self.engine.connect() as conn:
            rules = dict(conn.execute(
                sa.select(cards_issued.c.card_uuid, cards_issued.c.rule_id).where(cards_issued.c.card_uuid.in_(uuids))
            ).all())
        received = now()
        new = self._insert_new(feedback, [
            {
                "card_uuid": e.card,
                "service": service,
                "rule_id": rules.get(e.card),
                "outcome": e.outcome,
                "accepted_suggestions": json.dumps(list(e.accepted_suggestions)),
                "override_code": e.override_code,
                "override_system": e.override_system,
                "override_display": e.override_display,
                "user_comment": e.user_comment,
                "outcome_timestamp": e.outcome_timestamp,
                "received_at": received,
            }
            for e in entries
        ], feedback.c.rule_id, feedback.c.outcome)
        metrics.count_feedback((rule_id, outcome) for rule_id, outcome in new)
        return len(new)

    def claim_jti(self, iss: str, jti: str, expires_at: dt.datetime) -> bool:
        """Record a token id; False when it was seen before (a replay). Expired ids are purged.

        While the database does not answer, ids are kept in this process (ReplayWindow): a replay to the same
        worker is still refused; one to another worker or instance during the outage is not seen by it. The
        trade-off: hook calls keep being answered (cards need no database) at that narrower protection."""
        if len(jti) > 256 or len(iss) > 512 or "\x00" in jti or "\x00" in iss:
            return False
        if not self.window.claim(iss, jti, expires_at):
            return False  # replayed to this process, whether or not the database saw the first
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(jwt_seen).where(jwt_seen.c.expires_at < now()))
            return self._insert_ignoring_duplicates(jwt_seen, [{"iss": iss, "jti": jti, "expires_at": expires_at}]) == 1
        except sa.exc.SQLAlchemyError as exc:
            if not unreachable(exc):
                raise
            log.warning(json.dumps({"event": "jwt_replay_check_local", "reason": "the store does not answer"}))
            return True

    def login_failures(self, address: str, since: dt.datetime) -> list[dt.datetime] | None:
        """When the wrong console tokens from this address since `since` were given, oldest first, as every
        instance recorded them; None while the database does not answer."""
        rows = console_login_failures
        try:
            with self.engine.connect() as conn:
                return [aware(at) for at in conn.execute(
                    sa.select(rows.c.failed_at).where(rows.c.address == address[:64], rows.c.failed_at >= since)
                    .order_by(rows.c.failed_at)).scalars()]
        except sa.exc.SQLAlchemyError as exc:
            if not unreachable(exc):
                raise
            return None

    def add_login_failure(self, address: str, at: dt.datetime, forget_before: dt.datetime) -> bool:
        """Record a wrong console token; rows older than `forget_before` go. False while the database does not
        answer."""
        rows = console_login_failures
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(rows).where(rows.c.failed_at < forget_before))
                conn.execute(sa.insert(rows).values(address=address[:64], failed_at=at))
            return True
        except sa.exc.SQLAlchemyError as exc:
            if not unreachable(exc):
                raise
            return False

    def clear_login_failures(self, address: str) -> None:
        """The right token was given: this address's wrong ones no longer count (kept while the database is
        down)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(console_login_failures).where(console_login_failures.c.address == address[:64]))
        except sa.exc.SQLAlchemyError as exc:
            if not unreachable(exc):
                raise

    def record_evaluation(self, service: str, hook_instance: str | None, status: int, duration_ms: float,
                          rules: Iterable[str], card_uuids: Iterable[str], *, repairs: Iterable[str] = (),
                          refusal: str | None = None) -> None:
        """Queue one service call's log row: which rules fired and which cards went back, the repairs made to its
        resources and why it was refused, never patient data."""
        repaired = list(repairs)
        self.writer.put_rows(evaluations, [{
            "service": service,
            "hook_instance": storable(hook_instance)[:256] if hook_instance is not None else None,
            "evaluated_at": now(),
            "duration_ms": duration_ms,
            "status": status,
            "rules_fired": orjson.dumps(list(rules)).decode(),
            "card_uuids": orjson.dumps(list(card_uuids)).decode(),
            "repairs": orjson.dumps(repaired).decode() if repaired else None,
            "refusal": refusal[:256] if refusal else None,
        }])

    def feedback_for(self, card_uuid: str) -> list[dict[str, Any]]:
        """The feedback on a card; a row stored before its card's log row was written takes the rule from it."""
        self.flush()
        rule = sa.func.coalesce(feedback.c.rule_id, cards_issued.c.rule_id).label("rule_id")
        query = (
            sa.select(*[c for c in feedback.c if c.name != "rule_id"], rule)
            .select_from(feedback.outerjoin(cards_issued, cards_issued.c.card_uuid == feedback.c.card_uuid))
            .where(feedback.c.card_uuid == card_uuid)
            .order_by(feedback.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [dict(r) | {"accepted_suggestions": json.loads(r["accepted_suggestions"])} for r in rows]

    def dispose(self) -> None:
        """Write the queued log rows, stop the writer thread and close the connections."""
        self.writer.stop(FLUSH_TIMEOUT)
        self.engine.dispose()
