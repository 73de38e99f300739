"""The feedback store on SQLite and on the real PostgreSQL of this machine (a throw-away schema per test)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cds_service import create_app
from cds_service.protocol import parse_feedback
from cds_service.store import FeedbackStore
from tests.conftest import load_scenario

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SERVICE = "injection-billing-encounter-discharge"
CARD = {"uuid": "card-0001", "source": {"topic": {"code": "admin-96372"}}}
REASON = {"system": "https://injection-billing.org/fhir/CodeSystem/override-reason", "code": "already-billed",
          "display": "Already billed on another charge or claim"}



def entry(card: str = "card-0001", outcome: str = "overridden", ts: str = "2026-11-27T00:17:15.033Z",
          **extra: Any) -> dict[str, Any]:
    return {"card": card, "outcome": outcome, "outcomeTimestamp": ts, **extra}


def feedback(*entries: dict[str, Any]) -> list[Any]:
    return parse_feedback({"feedback": list(entries)})


def test_pg_url_really_uses_its_own_schema(pg_url: str) -> None:
    s = FeedbackStore(pg_url)
    try:
        s.create_schema()
        with s.engine.connect() as conn:
            schema = conn.execute(sa.text("select current_schema()")).scalar_one()
            tables = set(conn.execute(sa.text(
                "select table_name from information_schema.tables where table_schema = current_schema()"
            )).scalars())
        assert pg_url.endswith(schema)
        assert {"cards_issued", "feedback"} <= tables
    finally:
        s.dispose()


def test_create_schema_twice_is_harmless(store: FeedbackStore) -> None:
    store.record_cards(SERVICE, "hi-1", [CARD])
    store.add_feedback(SERVICE, feedback(entry()))
    store.create_schema()
    assert store.ping()
    assert [r["rule_id"] for r in store.feedback_for("card-0001")] == ["admin-96372"]


def test_feedback_is_stored_and_read_back_with_its_rule(store: FeedbackStore) -> None:
    store.record_cards(SERVICE, "hi-1", [CARD])
    store.add_feedback(SERVICE, feedback(entry(overrideReason={"reason": REASON, "userComment": "on the 9 am visit"})))
    rows = store.feedback_for("card-0001")
    assert len(rows) == 1
    row = rows[0]
    assert row["service"] == SERVICE
    assert row["rule_id"] == "admin-96372"
    assert row["outcome"] == "overridden"
    assert (row["override_code"], row["override_system"], row["override_display"]) == (
        REASON["code"], REASON["system"], REASON["display"])
    assert row["user_comment"] == "on the 9 am visit"
    assert row["accepted_suggestions"] == []
    stamp = row["outcome_timestamp"]
    expected = dt.datetime(2026, 11, 27, 0, 17, 15, 33000, tzinfo=dt.UTC)
    assert stamp == expected if stamp.tzinfo else stamp == expected.replace(tzinfo=None)


def test_the_same_feedback_twice_is_stored_once(store: FeedbackStore) -> None:
    store.record_cards(SERVICE, "hi-1", [CARD])
    store.add_feedback(SERVICE, feedback(entry()))
    store.add_feedback(SERVICE, feedback(entry()))
    assert len(store.feedback_for("card-0001")) == 1


def test_a_duplicate_within_one_post_is_stored_once(store: FeedbackStore) -> None:
    store.add_feedback(SERVICE, feedback(entry(), entry()))
    assert len(store.feedback_for("card-0001")) == 1


def test_a_later_outcome_on_the_same_card_is_a_new_row(store: FeedbackStore) -> None:
    store.add_feedback(SERVICE, feedback(entry()))
    store.add_feedback(SERVICE, feedback(entry(ts="2026-11-27T00:18:00Z")))
    assert len(store.feedback_for("card-0001")) == 2


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_add_feedback_returns_how_many_were_new(store: FeedbackStore) -> None:
    store.record_cards(SERVICE, "hi-1", [CARD])
    assert store.add_feedback(SERVICE, feedback(entry())) == 1
    assert store.add_feedback(SERVICE, feedback(entry())) == 0
    assert store.add_feedback(SERVICE, feedback(entry(ts="2026-11-27T00:18:00Z"), entry(card="other"))) == 2
    assert store.add_feedback(SERVICE, feedback(entry(card="third"), entry(card="third"))) == 1


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_outcome_timestamps_keep_their_instant(store: FeedbackStore) -> None:
    store.add_feedback(SERVICE, feedback(entry(ts="2026-11-27T00:17:15-05:00"), entry(ts="2026-11-27T00:17:15+02:00")))
    stamps = [r["outcome_timestamp"] for r in store.feedback_for("card-0001")]
    as_utc = sorted(s if s.tzinfo else s.replace(tzinfo=dt.UTC) for s in stamps)
    assert as_utc == [dt.datetime(2026, 11, 26, 22, 17, 15, tzinfo=dt.UTC),
                      dt.datetime(2026, 11, 27, 5, 17, 15, tzinfo=dt.UTC)]


def test_feedback_on_an_unknown_card_is_kept_without_a_rule(store: FeedbackStore) -> None:
    store.add_feedback(SERVICE, feedback(entry(card="never-issued")))
    rows = store.feedback_for("never-issued")
    assert len(rows) == 1
    assert rows[0]["rule_id"] is None


def test_accepted_suggestions_round_trip_as_a_list(store: FeedbackStore) -> None:
    store.record_cards(SERVICE, "hi-1", [CARD])
    entries = feedback(entry(outcome="accepted", acceptedSuggestions=[{"id": "sugg-1"}, {"id": "sugg-2"}]))
    store.add_feedback(SERVICE, entries)
    (row,) = store.feedback_for("card-0001")
    assert row["outcome"] == "accepted"
    assert row["accepted_suggestions"] == ["sugg-1", "sugg-2"]
    assert row["override_code"] is None


def test_recording_the_same_cards_twice_is_harmless(store: FeedbackStore) -> None:
    store.record_cards(SERVICE, "hi-1", [CARD])
    store.flush()
    store.record_cards(SERVICE, "hi-1", [CARD])
    store.flush()
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from cards_issued")).scalar_one() == 1


def test_ping(store: FeedbackStore) -> None:
    assert store.ping() is True


def test_ping_is_false_before_the_tables_exist(store_url: str) -> None:
    s = FeedbackStore(store_url)
    try:
        assert s.ping() is False
    finally:
        s.dispose()


def test_ping_is_false_when_the_database_is_unreachable() -> None:
    s = FeedbackStore("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=3")
    try:
        assert s.ping() is False
    finally:
        s.dispose()


# --- through the Flask app, on PostgreSQL ------------------------------------------------------

def test_app_on_postgresql_stores_feedback_and_is_healthy(pg_url: str, make_config: Callable[..., Path]) -> None:
    app = create_app(str(make_config(store={"url": pg_url})))
    reader = FeedbackStore(pg_url)
    try:
        client = app.test_client()
        health = client.get("/healthz")
        assert health.status_code == 200, health.get_data(as_text=True)
        called = client.post(f"/cds-services/{SERVICE}", json=copy.deepcopy(load_scenario("01")["request"]))
        assert called.status_code == 200, called.get_data(as_text=True)[:500]
        card = next(c for c in called.get_json()["cards"] if c["source"]["topic"]["code"] == "admin-96372")
        body = {"feedback": [
            entry(card=card["uuid"], ts="2026-11-27T01:00:00Z", overrideReason={"reason": REASON}),
            entry(card="0b6b6c1e-7d35-4e0e-9a53-1f8f4b7f6a11"),  # the sandbox's shape, a card never issued
        ]}
        response = client.post(f"/cds-services/{SERVICE}/feedback", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        again = client.post(f"/cds-services/{SERVICE}/feedback", json=body)
        assert again.status_code == 200
        (row,) = reader.feedback_for(card["uuid"])
        assert (row["outcome"], row["rule_id"], row["override_code"]) == ("overridden", "admin-96372", REASON["code"])
        (unknown,) = reader.feedback_for("0b6b6c1e-7d35-4e0e-9a53-1f8f4b7f6a11")
        assert unknown["rule_id"] is None
    finally:
        reader.dispose()
        app.extensions["cds"].store.dispose()
