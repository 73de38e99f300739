"""Feedback at the edges of what the schema lets through: a clear 400, or stored repaired; never a 500.
On SQLite and on the real PostgreSQL (which refuses a NUL in text)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from cds_service import create_app

FEEDBACK = "/cds-services/injection-billing-encounter-discharge/feedback"


def client_on(make_config: Callable[..., Path], store_url: str) -> FlaskClient:
    return create_app(str(make_config(store={"url": store_url}))).test_client()


def entry(**fields: object) -> dict[str, object]:
    return {"feedback": [{"card": "card-1", "outcome": "overridden", "outcomeTimestamp": "2025-03-04T10:00:00Z",
                          **fields}]}


def test_a_timestamp_after_9999_in_utc_is_a_400(make_config: Callable[..., Path], store_url: str) -> None:
    answer = client_on(make_config, store_url).post(FEEDBACK, json=entry(outcomeTimestamp="9999-12-31T23:59:59-01:00"))
    assert answer.status_code == 400
    assert "outcomeTimestamp" in answer.get_json()["issue"][0]["diagnostics"]


def test_a_nul_in_an_id_is_a_400(make_config: Callable[..., Path], store_url: str) -> None:
    client = client_on(make_config, store_url)
    assert client.post(FEEDBACK, json=entry(card="card-\x00-1")).status_code == 400
    accepted = {"outcome": "accepted", "acceptedSuggestions": [{"id": "s\x00"}]}
    assert client.post(FEEDBACK, json=entry(**accepted)).status_code == 400


def test_a_nul_in_free_text_is_stored_as_a_replacement_character(make_config: Callable[..., Path],
                                                                 store_url: str) -> None:
    app = create_app(str(make_config(store={"url": store_url})))
    reason = {"reason": {"code": "other", "display": "a\x00b"}, "userComment": "left\x00right"}
    answer = app.test_client().post(FEEDBACK, json=entry(overrideReason=reason))
    assert answer.status_code == 200 and answer.get_json() == {"received": 1, "stored": 1}
    [row] = app.extensions["cds"].store.feedback_for("card-1")
    assert (row["override_display"], row["user_comment"]) == ("a\ufffdb", "left\ufffdright")
    app.extensions["cds"].store.dispose()
