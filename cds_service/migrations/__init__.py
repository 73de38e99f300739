"""Alembic migrations of the store, shipped in the package and run programmatically (no alembic.ini).

`upgrade(engine)` brings a database to head: at start-up (FeedbackStore.create_schema) and from
`cds-service db upgrade`. At head it only reads the version (without importing Alembic, about a tenth
of a worker's start-up); else it is safe when several processes start at once:
PostgreSQL takes an advisory lock on the migrating connection, SQLite an immediate (write) transaction;
within one process a lock serializes upgrades, as Alembic's `context` is process-global.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).resolve().parent
# pg_advisory_lock key held while migrating, so concurrent start-ups wait for each other.
ADVISORY_LOCK_KEY = 0x4344_5348_4F4F_4B53  # "CDSHOOKS"
# The tables of 0001: a database made by create_all before migrations existed is stamped at 0001.
INITIAL_TABLES = frozenset({"cards_issued", "feedback", "jwt_seen"})
INITIAL_REVISION = "0001"
HEAD = "0004"  # the newest revision in versions/ (tests/integration/test_migrations.py holds it to Alembic's head)
# Alembic's `context` is process-global: upgrades in one process run one at a time whatever the database.
_PROCESS_LOCK = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for the package's migrations; env.py uses `connection` when given."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at; None when it has never been migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction, held exclusively against other processes migrating; committed at the end."""
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            # Session-level lock on this very connection, released below (it would outlive a pooled connection).
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            conn.commit()
        elif conn.dialect.name == "sqlite":
            # One write transaction around the whole upgrade (SQLite's DDL is transactional): a second
            # process waits on busy_timeout, then finds the database at head.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if postgres:
                try:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                    conn.commit()
                except sa.exc.SQLAlchemyError:
                    conn.invalidate()  # closing the session releases the lock


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate the database to `revision` (head by default); return the revision it is at."""
    if revision == "head" and at_head(engine):
        return HEAD
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with _PROCESS_LOCK, _migration_lock(engine) as conn:
        context = MigrationContext.configure(conn)
        if context.get_current_revision() is None and INITIAL_TABLES <= set(sa.inspect(conn).get_table_names()):
            command.stamp(alembic_config(conn), INITIAL_REVISION)
        command.upgrade(alembic_config(conn), revision)
        rev = MigrationContext.configure(conn).get_current_revision()
    assert rev is not None
    return rev


def at_head(engine: Engine) -> bool:
    """Whether the database's version table holds HEAD and nothing else (False when it cannot be read)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.SQLAlchemyError:
        return False
    return [tuple(row) for row in rows] == [(HEAD,)]
