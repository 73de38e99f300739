"""Alembic migrations of the store, on SQLite and on the real PostgreSQL of this machine (a throw-away schema per test),
and the evaluation log they create, written once per service call."""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from cds_service import cli, create_app, migrations
from cds_service.store import FeedbackStore, make_engine, metadata
from tests.conftest import ROOT, load_scenario, topics

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SERVICE = "injection-billing-encounter-discharge"
PATIENT_ID = "pt-4f2b4345"  # scenario 01's patient
CONDITION_CODE = "D51.0"  # and the condition on its chart
TABLES = {"cards_issued", "feedback", "jwt_seen", "evaluations", "console_login_failures"}


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    e = make_engine(store_url)
    try:
        yield e
    finally:
        e.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def version_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


# --- upgrade ---------------------------------------------------------------------------------------

def test_upgrade_from_empty_then_again_does_nothing(engine: Engine) -> None:
    assert migrations.current(engine) is None
    assert table_names(engine) == set()
    assert migrations.upgrade(engine) == migrations.head() == "0004"
    assert table_names(engine) == TABLES | {"alembic_version"}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO cards_issued VALUES ('c-1', 's', 'r', 'hi', CURRENT_TIMESTAMP)"))
    assert migrations.upgrade(engine) == "0004"
    assert migrations.current(engine) == "0004"
    assert version_rows(engine) == ["0004"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cards_issued")).scalar_one() == 1


def test_the_head_the_start_up_check_knows_is_alembics_head() -> None:
    assert migrations.HEAD == migrations.head()


def test_a_worker_starting_on_a_database_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    script = "import sys; from cds_service.store import FeedbackStore; s = FeedbackStore(sys.argv[1]); " \
             "print(s.create_schema(), 'alembic' in sys.modules)"
    run = [sys.executable, "-c", script, url]
    first = subprocess.run(run, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    again = subprocess.run(run, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert first == ["0004", "True"]  # a new database: migrated by Alembic
    assert again == ["0004", "False"]  # at head: the version is read with SQLAlchemy alone


def test_migrated_schema_matches_metadata(engine: Engine) -> None:
    migrations.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, metadata) == []


def test_revisions_apply_one_at_a_time(engine: Engine) -> None:
    assert migrations.upgrade(engine, "0001") == "0001"
    assert table_names(engine) == {"cards_issued", "feedback", "jwt_seen", "alembic_version"}
    assert migrations.upgrade(engine) == "0004"
    assert "evaluations" in table_names(engine)
    indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("evaluations")}
    assert "ix_evaluations_evaluated_at" in indexes
    indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("console_login_failures")}
    assert indexes == {"ix_console_login_failures_address", "ix_console_login_failures_failed_at"}


def test_a_database_made_before_migrations_is_adopted(engine: Engine) -> None:
    metadata.create_all(engine, tables=[metadata.tables[t] for t in ("cards_issued", "feedback", "jwt_seen")])
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO cards_issued VALUES ('c-1', 's', 'r', 'hi', CURRENT_TIMESTAMP)"))
    assert migrations.upgrade(engine) == "0004"
    assert "evaluations" in table_names(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cards_issued")).scalar_one() == 1


def test_store_create_schema_is_the_upgrade(store_url: str) -> None:
    store = FeedbackStore(store_url)
    try:
        assert store.ping() is False
        assert store.create_schema() == "0004"
        assert store.create_schema() == "0004"
        assert store.ping() is True
        assert version_rows(store.engine) == ["0004"]
    finally:
        store.dispose()


STARTER = """
import sys, time
from pathlib import Path
from cds_service import migrations
from cds_service.store import make_engine
url, folder, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
engine = make_engine(url)
(folder / f"{name}.ready").touch()
deadline = time.monotonic() + 30
while not (folder / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.005)
print(migrations.upgrade(engine))
engine.dispose()
"""


def test_concurrent_start_ups_all_succeed(store_url: str, tmp_path: Path) -> None:
    """Several processes starting at once on an empty database: one migrates, the others wait and find head."""
    folder = tmp_path / "start"
    folder.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", STARTER, store_url, str(folder), f"p{i}"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(folder.glob("*.ready"))) < len(procs) and time.monotonic() < deadline:
            time.sleep(0.01)
        (folder / "go").touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [(p.returncode, out.strip()) for p, (out, _) in zip(procs, outputs, strict=True)] == [(0, "0004")] * 3, [
        err[-2000:] for _, err in outputs]
    e = make_engine(store_url)
    try:
        assert version_rows(e) == ["0004"]
    finally:
        e.dispose()


def test_a_new_sqlite_file_goes_to_wal_mode_once_another_writer_lets_go(tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once, without its busy timeout, while another connection writes
    (two workers starting together on a new file): the store waits for the lock as for any other."""
    path = tmp_path / "store.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE elsewhere (x)")
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, other.execute, ["COMMIT"])
    release.start()
    started = time.monotonic()
    store = FeedbackStore(f"sqlite:///{path}")
    try:
        assert store.create_schema() == "0004"
        assert time.monotonic() - started >= 0.25
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert TABLES <= table_names(store.engine)
    finally:
        release.join()
        other.close()
        store.engine.dispose()


def test_concurrent_upgrades_in_one_process_all_succeed(store_url: str) -> None:
    engines = [make_engine(store_url) for _ in range(3)]
    barrier = threading.Barrier(len(engines))
    results: list[str] = []
    failures: list[BaseException] = []

    def start(e: Engine) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(migrations.upgrade(e))
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert failures == []
        assert results == ["0004"] * len(engines)
    finally:
        for e in engines:
            e.dispose()


def test_the_advisory_lock_is_released_after_upgrade(pg_url: str) -> None:
    e = sa.create_engine(pg_url, pool_size=1, max_overflow=0)  # the upgrade's connection comes back from the pool
    try:
        migrations.upgrade(e)
        with e.connect() as conn:
            held = conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )).scalar_one()
        assert held == 0
    finally:
        e.dispose()


# --- the db command --------------------------------------------------------------------------------

def test_cli_db_upgrade_and_current(make_config: Callable[..., Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(store={"url": f"sqlite:///{tmp_path}/cli/cds.db"})
    assert cli.main(["db", "current", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "none"
    assert cli.main(["db", "upgrade", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "0004 (head)"
    assert cli.main(["db", "upgrade", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "0004 (head)"
    assert cli.main(["db", "current", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "0004 (head)"
    e = make_engine(f"sqlite:///{tmp_path}/cli/cds.db")
    try:
        assert TABLES <= table_names(e)
    finally:
        e.dispose()


def test_cli_db_upgrade_with_an_invalid_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: 3\n")
    assert cli.main(["db", "upgrade", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err
    assert "store: 3 is not of type 'object'" in err


def test_cli_db_upgrade_with_the_store_down_is_exit_2(make_config: Callable[..., Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(store={"url": "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=3"})
    assert cli.main(["db", "upgrade", "--config", str(config)]) == 2
    assert "db upgrade: OperationalError" in capsys.readouterr().err


# --- the evaluation log ------------------------------------------------------------------------------

def evaluation_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM evaluations ORDER BY id")).mappings()]


def test_one_evaluation_row_per_call_without_patient_data(store_url: str, make_config: Callable[..., Path]) -> None:
    app = create_app(str(make_config(store={"url": store_url})))
    store = app.extensions["cds"].store
    try:
        client = app.test_client()
        request = copy.deepcopy(load_scenario("01")["request"])
        ok = client.post(f"/cds-services/{SERVICE}", json=request)
        assert ok.status_code == 200, ok.get_data(as_text=True)[:500]
        cards = ok.get_json()["cards"]
        assert cards

        missing = copy.deepcopy(request)
        del missing["prefetch"]["conditions"]
        del missing["fhirServer"]
        missing["hookInstance"] = "d1b0c3a2-0000-4000-8000-000000000412"
        refused = client.post(f"/cds-services/{SERVICE}", json=missing)
        assert refused.status_code == 412

        store.flush()
        first, second = evaluation_rows(store.engine)
        assert (first["service"], first["status"], first["hook_instance"]) == (SERVICE, 200, request["hookInstance"])
        assert json.loads(first["card_uuids"]) == [c["uuid"] for c in cards]
        fired = json.loads(first["rules_fired"])
        assert fired == sorted(fired) and set(topics(ok.get_json())) <= set(fired)
        assert first["duration_ms"] >= 0
        assert first["evaluated_at"] is not None

        assert (second["service"], second["status"], second["hook_instance"]) == (SERVICE, 412, missing["hookInstance"])
        assert json.loads(second["card_uuids"]) == [] and json.loads(second["rules_fired"]) == []

        for row in (first, second):
            assert set(row) == {"id", "hook_instance", "service", "evaluated_at", "duration_ms", "status",
                                "rules_fired", "card_uuids", "repairs", "refusal"}
            assert (row["repairs"], row["refusal"]) == (None, None)
            text = json.dumps(row, default=str)
            assert PATIENT_ID not in text
            assert CONDITION_CODE not in text
    finally:
        store.dispose()


def test_repairs_and_refusals_are_in_the_evaluation_log(store_url: str, make_config: Callable[..., Path]) -> None:
    """Each near-miss of R4 repaired is a line of the call's row; a 401 is a row with its reason, and a log
    line with the reason and the address, never the token."""
    app = create_app(str(make_config(store={"url": store_url})))
    store = app.extensions["cds"].store
    try:
        request = copy.deepcopy(load_scenario("01")["request"])
        first = request["prefetch"]["administrations"]["entry"][0]["resource"]
        first["effectiveDateTime"] = "2025-03-04T10:15:00"
        first["performer"] = first["performer"][0]
        assert app.test_client().post(f"/cds-services/{SERVICE}", json=request).status_code == 200
        store.flush()
        (row,) = evaluation_rows(store.engine)
        assert json.loads(row["repairs"]) == [
            "MedicationAdministration at administrations: effectiveDateTime: a date-time without a time zone; "
            "read in the encounter's offset (-05:00)",
            "MedicationAdministration at administrations: performer: one value where FHIR R4 wants a list; "
            "read as a list of one",
        ]
    finally:
        store.dispose()
    issuer = {"iss": "https://ehr.example.org", "jwks": {"keys": []}}
    app = create_app(str(make_config(store={"url": store_url}, auth={"required": True, "trusted_issuers": [issuer]})))
    store = app.extensions["cds"].store
    try:
        secret = "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImsifQ.eyJpc3MiOiJ4In0.c2ln"
        handler = Collect()
        logger = logging.getLogger("cds_service.auth")
        logger.addHandler(handler)
        try:
            client = app.test_client()
            assert client.post(f"/cds-services/{SERVICE}", json=request).status_code == 401
            assert client.post(f"/cds-services/{SERVICE}/feedback", json={},
                               headers={"Authorization": f"Bearer {secret}"}).status_code == 401
            assert client.get("/cds-services", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        finally:
            logger.removeHandler(handler)
        store.flush()
        rows = [(r["service"], r["status"], r["refusal"], r["hook_instance"])
                for r in evaluation_rows(store.engine)[1:]]  # after the call above
        assert rows == [(SERVICE, 401, "no bearer token", None),
                        (f"{SERVICE}/feedback", 401, "issuer not trusted", None),
                        ("discovery", 401, "issuer not trusted", None)]
        lines = [json.loads(m) for m in handler.messages if "auth_refused" in m]
        assert [(line["reason"], line["path_service"], line["address"]) for line in lines] == [
            ("no bearer token", SERVICE, "127.0.0.1"), ("issuer not trusted", f"{SERVICE}/feedback", "127.0.0.1"),
            ("issuer not trusted", "discovery", "127.0.0.1")]
        assert not any(secret in m for m in handler.messages)
    finally:
        store.dispose()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_failing_evaluation_log_does_not_change_the_answer(app: Any) -> None:
    store = app.extensions["cds"].store
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE evaluations"))
    handler = Collect()
    logger = logging.getLogger("cds_service.store")
    logger.addHandler(handler)
    try:
        request = copy.deepcopy(load_scenario("01")["request"])
        response = app.test_client().post(f"/cds-services/{SERVICE}", json=request)
        assert store.flush()
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.get_json()["cards"]
    failed = [json.loads(m) for m in handler.messages if "store_write_failed" in m]
    assert [(f["table"], f["attempt"], f["dropped"]) for f in failed] == [("evaluations", 1, False),
                                                                          ("evaluations", 2, True)]
    assert failed[0]["error"] == "OperationalError"
    assert PATIENT_ID not in json.dumps(failed) and CONDITION_CODE not in json.dumps(failed)
    assert request["hookInstance"] not in json.dumps(failed)
