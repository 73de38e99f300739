"""The store: issued cards, feedback and the evaluation log, in SQLite or PostgreSQL through SQLAlchemy Core.

`metadata` is the one definition of the tables the queries use; the schema itself is made by the Alembic
migrations in cds_service/migrations, which a test keeps identical to `metadata`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url

from cds_service import metrics, migrations
from cds_service.protocol import FeedbackEntry

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
)
sa.Index("ix_evaluations_evaluated_at", evaluations.c.evaluated_at)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_engine(url: str) -> Engine:
    """An engine for the store URL; a SQLite file's folder is created on demand."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 15})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable across crashes, one fsync per checkpoint
            cur.execute("PRAGMA busy_timeout=15000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class FeedbackStore:
    """Cards issued and feedback received, behind one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

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
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table).on_conflict_do_nothing()
        with self.engine.begin() as conn:
            # rowcount is -1 for these inserts under psycopg; take the rows actually written instead.
            return [tuple(row) for row in conn.execute(stmt.returning(*returning), list(rows)).all()]

    def record_cards(self, service: str, hook_instance: str, cards: Iterable[Mapping[str, Any]]) -> None:
        """Remember which rule each card came from, so feedback can be counted per rule."""
        issued_at = now()
        self._insert_ignoring_duplicates(cards_issued, [
            {
                "card_uuid": card["uuid"],
                "service": service,
                "rule_id": card["source"]["topic"]["code"],
                "hook_instance": hook_instance,
                "issued_at": issued_at,
            }
            for card in cards
        ])

    def add_feedback(self, service: str, entries: Sequence[FeedbackEntry]) -> int:
        """Store feedback entries; return how many were new."""
        uuids = {e.card for e in entries}
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
        """Record a token id; False when it was seen before (a replay). Expired ids are purged."""
        if len(jti) > 256 or len(iss) > 512:
            return False
        with self.engine.begin() as conn:
            conn.execute(sa.delete(jwt_seen).where(jwt_seen.c.expires_at < now()))
        return self._insert_ignoring_duplicates(jwt_seen, [{"iss": iss, "jti": jti, "expires_at": expires_at}]) == 1

    def record_evaluation(self, service: str, hook_instance: str | None, status: int, duration_ms: float,
                          rules: Iterable[str], card_uuids: Iterable[str]) -> None:
        """Log one service call: which rules fired and which cards went back, never patient data."""
        with self.engine.begin() as conn:
            conn.execute(sa.insert(evaluations).values(
                service=service,
                hook_instance=hook_instance[:256] if hook_instance is not None else None,
                evaluated_at=now(),
                duration_ms=duration_ms,
                status=status,
                rules_fired=json.dumps(list(rules)),
                card_uuids=json.dumps(list(card_uuids)),
            ))

    def feedback_for(self, card_uuid: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(feedback).where(feedback.c.card_uuid == card_uuid).order_by(feedback.c.id)
            ).mappings().all()
        return [dict(r) | {"accepted_suggestions": json.loads(r["accepted_suggestions"])} for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()
