"""The request check's compiled fast path (fastjsonschema) against jsonschema, the authority.

protocol.check accepts what the compiled code accepts and asks jsonschema about the rest. So whatever the
compiled code accepts, jsonschema must accept too, and check() must refuse exactly what jsonschema refuses:
on the real requests in the fixtures and on generated near-misses of them. (The compiled code may refuse
more: its `$` does not match before a final newline, as in the ECMA regexes JSON Schema names.)
"""

from __future__ import annotations

import copy
import json
from typing import Any

import fastjsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service import protocol
from cds_service.errors import InvalidHookRequest
from tests.conftest import FIXTURES

SCHEMAS = [
    ("request.schema.json", None),
    ("request.schema.json", "#/$defs/context-order-sign"),
    ("request.schema.json", "#/$defs/context-encounter"),
    ("feedback.schema.json", None),
]


def real_requests() -> list[dict[str, Any]]:
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        request = data.get("request", data)
        if isinstance(request, dict) and "hook" in request:
            out.append(request)
    for line in (FIXTURES / "sandbox-observed-requests.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            if entry["kind"] == "cds-call" and isinstance(entry["body"], dict):
                out.append(entry["body"])
    return out


REQUESTS = real_requests()


def fast_verdict(name: str, ref: str | None, instance: Any) -> bool:
    try:
        protocol.compiled(name, ref)(instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def check_verdict(name: str, ref: str | None, instance: Any) -> bool:
    try:
        protocol.check(name, instance, ref)
    except InvalidHookRequest:
        return False
    return True


def agree(name: str, ref: str | None, instance: Any) -> None:
    authority = authority_verdict(name, ref, instance)
    assert check_verdict(name, ref, instance) == authority
    if fast_verdict(name, ref, instance):
        assert authority


def authority_verdict(name: str, ref: str | None, instance: Any) -> bool:
    v = protocol.validator(name)
    if ref is not None:
        v = v.evolve(schema={"$ref": ref, "$defs": v.schema["$defs"]})
    return v.is_valid(instance)


def test_the_real_requests_are_enough_to_tell() -> None:
    assert len(REQUESTS) >= 8  # the fixtures' requests, the sandbox's own calls among them
    assert all(authority_verdict("request.schema.json", None, r) for r in REQUESTS)


@pytest.mark.parametrize("name, ref", SCHEMAS)
def test_every_schema_has_a_compiled_check(name: str, ref: str | None) -> None:
    assert protocol.compiled(name, ref) is not None


ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
    st.sampled_from(["", " ", "a b", "{x}", "Bearer", "bearer", "Basic", "https://ehr.example/fhir", "http://",
                     "https://a b", "x" * 257, "Patient/1\n"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.sampled_from(["resourceType", "entry"]),
                                                         st.just("Bundle"), max_size=2),
)


@st.composite
def near_misses(draw: st.DrawFn) -> Any:
    """A real request with a few values swapped for odd ones, or keys dropped, at any depth."""
    value = copy.deepcopy(draw(st.sampled_from(REQUESTS)))
    for _ in range(draw(st.integers(1, 4))):
        node = value
        for _ in range(draw(st.integers(0, 3))):
            children = [k for k, v in node.items() if isinstance(v, dict)] if isinstance(node, dict) else []
            if not children:
                break
            node = node[draw(st.sampled_from(sorted(children)))]
        if not isinstance(node, dict) or not node:
            continue
        key = draw(st.sampled_from(sorted(node)))
        if draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(ODD_VALUES)
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=near_misses())
def test_the_check_says_what_jsonschema_says(request: Any) -> None:
    agree("request.schema.json", None, request)
    context = request.get("context") if isinstance(request, dict) else None
    for name, ref in SCHEMAS[1:3]:
        agree(name, ref, context)


@settings(max_examples=200, deadline=None)
@given(entry=st.fixed_dictionaries(
    {"card": ODD_VALUES, "outcome": st.one_of(ODD_VALUES, st.sampled_from(["accepted", "overridden"])),
     "outcomeTimestamp": st.one_of(ODD_VALUES, st.just("2026-11-27T10:00:00Z"))},
    optional={"overrideReason": st.one_of(ODD_VALUES, st.just({"reason": {"code": "x", "system": "y"}})),
              "acceptedSuggestions": st.one_of(ODD_VALUES, st.just([{"id": "s"}]))},
))
def test_the_feedback_check_says_what_jsonschema_says(entry: dict[str, Any]) -> None:
    for body in ({"feedback": [entry]}, {"feedback": entry}, entry):
        agree("feedback.schema.json", None, body)


def test_a_final_newline_is_refused_by_both_as_the_published_pattern_says_in_ecma_regex() -> None:
    """Python's `$` matches before a final newline, ECMA's (the OpenAPI description's dialect) does not: the
    patterns end with (?![\\s\\S])$ so that both read them alike."""
    context = {"patientId": "p1", "userId": "Practitioner/1", "encounterId": "e1\n"}
    assert not fast_verdict("request.schema.json", "#/$defs/context-encounter", context)
    assert not check_verdict("request.schema.json", "#/$defs/context-encounter", context)


def test_a_refused_request_still_names_each_violation_by_path() -> None:
    request = copy.deepcopy(REQUESTS[0])
    del request["hookInstance"]
    request["context"] = {"patientId": 7}
    with pytest.raises(InvalidHookRequest) as caught:
        protocol.check("request.schema.json", request)
    assert str(caught.value) == "The request breaks CDS Hooks 2.0: (body): 'hookInstance' is required"
    with pytest.raises(InvalidHookRequest) as caught:
        protocol.check("request.schema.json", request["context"], "#/$defs/context-encounter", prefix=("context",))
    message = str(caught.value)
    assert "context/patientId: must be of type string" in message
    assert "(body)" in message or "context: 'userId' is required" in message


@pytest.mark.parametrize("schema, expected", [
    ({"type": "string", "format": "date-time"}, True),
    ({"properties": {"when": {"anyOf": [{"type": "null"}, {"format": "date"}]}}}, True),
    ({"properties": {"format": {"type": "string"}}}, False),  # a property named format is no keyword
    ({"description": "any format"}, False),
])
def test_a_schema_with_a_format_keyword_is_left_to_jsonschema(schema: dict[str, Any], expected: bool) -> None:
    assert protocol.uses_format(schema) is expected
