"""Valid-but-extreme values in every field the service reads: a card or a clear 4xx, never a 5xx.

Each example takes a public scenario and puts extreme values into one to four of its leaves (anywhere in
the prefetched resources or the context): dates at year 1 or 9999 with any offset where a date was,
decimals up to 1e308 where a number was, NULs, lone surrogates and other hostile text where text was,
and now and then any of these anywhere. Feedback gets the same treatment in each of its fields, on the
store the suite runs against (PostgreSQL in CI)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service import create_app
from tests.conftest import DEFAULT_CONFIG, PG_BASE, load_scenario

SCENARIOS = ["01", "02", "03", "06", "13"]
NOT_READ = {"fhirServer", "fhirAuthorization", "hook", "hookInstance"}  # the hook's own framing; schema-checked
DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T.*)?)?)?$")
OFFSETS = st.sampled_from(["Z", "+14:00", "-14:00", "-12:00", "+05:45", "-00:00", "+00:00", "-01:00"])
EXTREME_DATES = st.one_of(
    st.sampled_from(["0001", "9999", "0001-01", "9999-12", "0001-01-01", "9999-12-31", "1900-02-28",
                     "2024-02-29", "1970-01-01"]),
    st.builds(lambda day, time, offset: f"{day}T{time}{offset}",
              st.sampled_from(["0001-01-01", "9999-12-31", "0001-01-02", "9999-12-30", "2024-02-29"]),
              st.sampled_from(["00:00:00", "23:59:59", "23:59:59.999999999", "12:00:00.5", "24:00:00"]),
              OFFSETS),
)
EXTREME_NUMBERS = st.one_of(
    st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, 0, -0.0, 1e100, 1e-100,
                     10**30, -(10**30), 2**63, 2**64 + 1, 0.1 + 0.2]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**40), max_value=10**40),
)
HOSTILE_TEXT = st.one_of(
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "\u202e", "\ufeff", "", " ", "\n", "Ｂ１２",
                     "ＩＭ", "1e308", "-0", "NaN", "Infinity", "x" * 20_000, "⁰¹²", "\U0010ffff", "%00",
                     "<script>", "{{ 7*7 }}", "' OR 1=1 --"]),
    st.text(max_size=30),
)
ANY_EXTREME = st.one_of(EXTREME_DATES, EXTREME_NUMBERS, HOSTILE_TEXT, st.none(), st.booleans())

Path_ = tuple[str | int, ...]


def leaves(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every scalar in a JSON value, with the keys and indexes that lead to it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not (path == () and key in NOT_READ) and key != "resourceType":
                yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def put(document: Any, path: Path_, value: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    document[path[-1]] = value


def extreme_like(draw: st.DrawFn, old: Any) -> Any:
    """An extreme value of the leaf's own kind, or now and then of any kind."""
    if draw(st.integers(0, 5)) == 0:
        return draw(ANY_EXTREME)
    if isinstance(old, bool):
        return draw(ANY_EXTREME)
    if isinstance(old, (int, float)):
        return draw(EXTREME_NUMBERS)
    if isinstance(old, str) and DATE.match(old):
        return draw(EXTREME_DATES)
    if isinstance(old, str):
        return draw(st.one_of(HOSTILE_TEXT, st.builds(lambda bad, at: old[:at] + bad + old[at:],
                                                      HOSTILE_TEXT, st.integers(0, len(old)))))
    return draw(ANY_EXTREME)


@st.composite
def extreme_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[Path_]]:
    scenario = load_scenario(draw(st.sampled_from(SCENARIOS)))
    request = copy.deepcopy(scenario["request"])
    paths = [path for path, _ in leaves(request)]
    chosen = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True))
    for path in chosen:
        old: Any = request
        for step in path:
            old = old[step]
        put(request, path, extreme_like(draw, old))
    return scenario["service"], request, chosen


def app_on(folder: Path, store_url: str) -> Flask:
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({"extends": str(DEFAULT_CONFIG), "store": {"url": store_url}}))
    return create_app(str(config))


@pytest.fixture(scope="module")
def extreme_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    folder = tmp_path_factory.mktemp("extreme")
    app = app_on(folder, f"sqlite:///{folder}/cds.db")
    yield app.test_client()
    app.extensions["cds"].store.dispose()


def sent(client: FlaskClient, url: str, body: Any) -> tuple[int, Any]:
    """POST a body that may hold lone surrogates (JSON escapes them as \\udxxx, as a real client would)."""
    answer = client.post(url, data=json.dumps(body), content_type="application/json")
    return answer.status_code, answer.get_json(silent=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(case=extreme_requests())
def test_extreme_values_anywhere_give_cards_or_a_clear_4xx(extreme_client: FlaskClient,
                                                           case: tuple[str, dict[str, Any], list[Path_]]) -> None:
    service, request, chosen = case
    status, body = sent(extreme_client, f"/cds-services/{service}", request)
    assert status < 500, (chosen, body)
    assert isinstance(body, dict)
    if status == 200:
        for card in body["cards"]:
            assert card["summary"] and len(card["summary"]) <= 140
            assert card["indicator"] in {"info", "warning", "critical"}
    else:
        assert 400 <= status < 500 and body["resourceType"] == "OperationOutcome", (chosen, body)


FEEDBACK = "/cds-services/injection-billing-encounter-discharge/feedback"


@st.composite
def extreme_feedback(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {"card": "card-1", "outcome": "overridden", "outcomeTimestamp": "2025-03-04T10:00:00Z",
                             "overrideReason": {"reason": {"code": "other", "system": "https://example.org",
                                                           "display": "why"},
                                                "userComment": "comment"}}
    if draw(st.booleans()):
        entry = {"card": "card-1", "outcome": "accepted", "outcomeTimestamp": "2025-03-04T10:00:00Z",
                 "acceptedSuggestions": [{"id": "suggestion-1"}]}
    paths = [path for path, _ in leaves(entry)]
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        old: Any = entry
        for step in path:
            old = old[step]
        put(entry, path, extreme_like(draw, old))
    return {"feedback": [entry]}


@pytest.fixture(scope="module")
def feedback_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    """The real PostgreSQL (which refuses a NUL in text), in a schema of this module's own."""
    schema = f"test_{uuid.uuid4().hex}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    app = app_on(tmp_path_factory.mktemp("feedback"), f"{PG_BASE}?options=-csearch_path%3D{schema}")
    yield app.test_client()
    app.extensions["cds"].store.dispose()
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=extreme_feedback())
def test_extreme_feedback_is_stored_or_a_clear_400(feedback_client: FlaskClient, body: dict[str, Any]) -> None:
    status, answer = sent(feedback_client, FEEDBACK, body)
    assert status in (200, 400), answer
    if status == 400:
        assert answer["resourceType"] == "OperationOutcome"
    else:
        assert answer["received"] == 1
