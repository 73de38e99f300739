"""Alembic environment: migrates the connection handed over in config.attributes (see cds_service.migrations)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from cds_service.store import make_engine, metadata

config = context.config
target_metadata = metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("cds_service migrations run online only: use `cds-service db upgrade`")

given = config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:  # the alembic command line with an ini that sets sqlalchemy.url
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            run_migrations(conn)
            conn.commit()
    finally:
        engine.dispose()
