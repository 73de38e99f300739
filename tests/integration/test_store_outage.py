"""The database down: hook calls keep answering, feedback and /healthz say 503 with Retry-After, the write-behind
rows wait and are written when it is back, and JWT replay protection and the console's login lockout go on in
each process.

Against a private PostgreSQL the test stops and starts (tests/integration/conftest.py), never the shared one."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from cds_service import create_app
from cds_service.store import FeedbackStore
from tests.conftest import load_scenario, topics
from tests.integration.conftest import PrivatePostgres
from tests.protocol.test_console_lockout import attempt
from tests.security.test_jwt import ISS, JWKS, bearer, token

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
FEEDBACK = DISCHARGE + "/feedback"


def feedback_body() -> dict[str, object]:
    return {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                          "outcomeTimestamp": dt.datetime.now(dt.UTC).isoformat()}]}


def evaluations(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT hook_instance FROM evaluations ORDER BY id"))]
    finally:
        engine.dispose()


def test_log_rows_wait_through_an_outage_and_are_written_when_it_ends(private_postgres: PrivatePostgres) -> None:
    store = FeedbackStore(private_postgres.url, flush_interval=0.01)
    try:
        store.create_schema()
        store.record_evaluation("svc", "before", 200, 1.0, [], [])
        assert store.flush(timeout=10)
        private_postgres.stop()
        for n in range(3):
            store.record_evaluation("svc", f"during-{n}", 200, 1.0, [], [])
        assert not store.flush(timeout=1.5)  # not written, and not dropped either: they wait
        assert store.writer.thread is not None and store.writer.thread.is_alive()
        private_postgres.start()
        assert store.flush(timeout=30)
        assert evaluations(private_postgres.url) == ["before", "during-0", "during-1", "during-2"]
    finally:
        store.dispose()


def test_what_a_client_sees_while_the_database_is_down(
    private_postgres: PrivatePostgres, make_config: Callable[..., Path]
) -> None:
    config = make_config(store={"url": private_postgres.url},
                         auth={"required": True, "trusted_issuers": [{"iss": ISS, "jwks": JWKS}]})
    app = create_app(str(config))
    client = app.test_client()
    body = load_scenario("01")["request"]
    url = "http://localhost" + DISCHARGE
    try:
        first = client.post(FEEDBACK, json=feedback_body(), headers=bearer(token(aud=url + "/feedback")))
        assert first.status_code == 200
        private_postgres.stop()
        health = client.get("/healthz")
        assert health.status_code == 503 and health.headers["Retry-After"] == "5"
        refused = client.post(FEEDBACK, json=feedback_body(), headers=bearer(token(aud=url + "/feedback")))
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert refused.get_json()["issue"][0]["code"] == "transient"
        jwt_once = token(aud=url)
        answer = client.post(DISCHARGE, json=body, headers=bearer(jwt_once))  # cards need no database
        assert answer.status_code == 200 and "admin-96372" in topics(answer.get_json())
        replay = client.post(DISCHARGE, json=body, headers=bearer(jwt_once))
        assert replay.status_code == 401  # still refused: this process remembers the token's id
        private_postgres.start()
        assert client.get("/healthz").status_code == 200
        assert client.post(FEEDBACK, json=feedback_body(),
                           headers=bearer(token(aud=url + "/feedback"))).status_code == 200
    finally:
        app.extensions["cds"].store.dispose()


def test_console_lockout_goes_on_from_memory_while_the_database_is_down(
    private_postgres: PrivatePostgres, make_config: Callable[..., Path]
) -> None:
    config = make_config(store={"url": private_postgres.url},
                         console={"enabled": True, "token": "console-s3cret", "login_failures": 3})
    app = create_app(str(config))
    try:
        assert attempt(app.test_client(), "wrong").status_code == 303  # counted in the database
        private_postgres.stop()
        assert [attempt(app.test_client(), "wrong").status_code for _ in range(3)] == [303, 303, 429]
        private_postgres.start()
        assert attempt(app.test_client(), "console-s3cret").status_code == 429  # still locked
        assert attempt(app.test_client(), "console-s3cret", address="198.51.100.8").status_code == 303
    finally:
        app.extensions["cds"].store.dispose()
