"""outcomeTimestamp: the published schema (/openapi.json is built from it) says exactly what is accepted.

Every string the schema's pattern allows is stored; what it refuses is a 400 before the store is touched."""

from __future__ import annotations

import datetime as dt
import re

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_service.errors import InvalidHookRequest
from cds_service.openapi import document
from cds_service.protocol import parse_feedback, services

SCHEMA = document(services("encounter-close"))["components"]["schemas"]
FIELD = SCHEMA["Feedback"]["properties"]["feedback"]["items"]["properties"]["outcomeTimestamp"]
VALID = jsonschema.Draft202012Validator(FIELD)


def feedback(at: str) -> dict[str, object]:
    return {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": at}]}


@given(at=st.from_regex(re.compile(FIELD["pattern"]), fullmatch=True).filter(VALID.is_valid))
def test_every_timestamp_the_published_schema_allows_is_accepted(at: str) -> None:
    (entry,) = parse_feedback(feedback(at))
    assert entry.outcome_timestamp.tzinfo == dt.UTC


@pytest.mark.parametrize(("at", "instant"), [
    ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00+00:00"),  # a leap second: the next minute's first instant
    ("2024-02-29T12:00:00-05:00", "2024-02-29T17:00:00+00:00"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00"),
    ("9999-12-31T23:59:59.999999-00:00", "9999-12-31T23:59:59.999999+00:00"),
    ("2025-03-04T10:00:00.123456789+14:00", "2025-03-03T20:00:00.123456+00:00"),
])
def test_accepted_timestamps_are_stored_as_their_instant_in_utc(at: str, instant: str) -> None:
    assert VALID.is_valid(at)
    (entry,) = parse_feedback(feedback(at))
    assert entry.outcome_timestamp.isoformat() == instant


@pytest.mark.parametrize("at", [
    "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2025-04-31T00:00:00Z", "0000-01-01T00:00:00Z",
    "2025-01-01T24:00:00Z", "2025-01-01T00:00:00+24:00", "2025-01-01T00:00:00.Z", "2025-01-01 00:00:00Z",
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
    "0001-01-01T12:00:00+01:00",  # on the edge days only UTC, so that the rule is a pattern
    "9999-12-31T23:59:60Z",
])
def test_what_the_schema_refuses_is_a_400(at: str) -> None:
    assert not VALID.is_valid(at)
    with pytest.raises(InvalidHookRequest):
        parse_feedback(feedback(at))
