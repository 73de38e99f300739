"""GET /metrics in one process (the Flask test client): each counter moves by exactly what was done."""

from __future__ import annotations

import copy
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service import create_app
from cds_service.errors import FhirDataUnavailable
from cds_service.fhir.client import FhirClient
from cds_service.metrics import FHIR_OUTCOMES, MULTIPROC_ENV
from tests.conftest import load_scenario, topics
from tests.integration.test_prefetch_faults import (
    ENCOUNTER,
    FHIR_JSON,
    PATIENT,
    base_of,
    hook_request,
    paged_admins,
    requested,
    serve_scenario,
)

pytestmark = pytest.mark.skipif(
    MULTIPROC_ENV in os.environ, reason="PROMETHEUS_MULTIPROC_DIR is set: these tests read in-process values"
)

DISCHARGE_ID = "injection-billing-encounter-discharge"
DISCHARGE = f"/cds-services/{DISCHARGE_ID}"
ORDER_SIGN = "/cds-services/injection-billing-order-sign"


def request_01() -> dict[str, Any]:
    return copy.deepcopy(load_scenario("01")["request"])


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of GET /metrics, by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def value(client: FlaskClient, name: str, **labels: str) -> float:
    """One sample as /metrics shows it; 0 for a label set not seen yet."""
    return scrape(client).get((name, frozenset(labels.items())), 0.0)


def registry(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- the endpoint --------------------------------------------------------------------------------

def test_metrics_is_prometheus_text_with_every_metric(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    for name, kind in [("cds_requests_total", "counter"), ("cds_request_duration_seconds", "histogram"),
                       ("cds_fhir_fetches_total", "counter"), ("cds_fhir_fetch_duration_seconds", "histogram"),
                       ("cds_cards_total", "counter"), ("cds_feedback_total", "counter")]:
        assert f"# TYPE {name.removesuffix('_total')} {kind}" in text or f"# TYPE {name} {kind}" in text, name


def test_metrics_needs_no_jwt_when_auth_is_required(make_config: Callable[..., Path]) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(key.public_key())) | {"kid": "k1", "alg": "ES384"}
    app = create_app(str(make_config(auth={
        "required": True, "trusted_issuers": [{"iss": "https://ehr.example.org", "jwks": {"keys": [jwk]}}],
    })))
    try:
        client = app.test_client()
        before = value(client, "cds_requests_total", service="discovery", endpoint="discovery", status="401")
        assert client.get("/cds-services").status_code == 401
        assert client.post(DISCHARGE, json=request_01()).status_code == 401
        response = client.get("/metrics")
        assert response.status_code == 200
        assert "cds_requests_total" in response.get_data(as_text=True)
        assert value(client, "cds_requests_total", service="discovery", endpoint="discovery", status="401") == \
            before + 1
    finally:
        app.extensions["cds"].store.dispose()


def test_with_a_metrics_token_only_its_bearer_scrapes(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(metrics={"token": "scrape-s3cret"})
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    refused = client.get("/metrics", headers={"Authorization": "Basic scrape-s3cret"})
    assert refused.status_code == 401 and refused.get_json()["resourceType"] == "OperationOutcome"
    scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-s3cret"})
    assert scraped.status_code == 200 and "cds_requests_total" in scraped.get_data(as_text=True)


# --- requests ------------------------------------------------------------------------------------

def test_service_calls_are_counted_by_service_and_status(client: FlaskClient) -> None:
    ok = {"service": DISCHARGE_ID, "endpoint": "call", "status": "200"}
    bad = {"service": DISCHARGE_ID, "endpoint": "call", "status": "400"}
    timed = {"service": DISCHARGE_ID, "endpoint": "call"}
    before = scrape(client)

    for _ in range(3):
        assert client.post(DISCHARGE, json=request_01()).status_code == 200
    for _ in range(2):
        assert client.post(DISCHARGE, json={"hook": "encounter-discharge"}).status_code == 400
    assert client.get("/cds-services").status_code == 200
    assert client.post("/cds-services/no-such-service", json=request_01()).status_code == 404

    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("cds_requests_total", **ok) == 3
    assert delta("cds_requests_total", **bad) == 2
    assert delta("cds_request_duration_seconds_count", **timed) == 5
    assert delta("cds_request_duration_seconds_bucket", **timed, le="+Inf") == 5
    assert delta("cds_request_duration_seconds_sum", **timed) > 0
    assert delta("cds_requests_total", service="discovery", endpoint="discovery", status="200") == 1
    assert delta("cds_requests_total", service="unknown", endpoint="call", status="404") == 1
    assert registry("cds_requests_total", **ok) == after[("cds_requests_total", frozenset(ok.items()))]


def test_preflights_and_other_paths_are_not_counted(client: FlaskClient) -> None:
    before = scrape(client)
    client.options(DISCHARGE, headers={"Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST"})
    client.get("/healthz")
    client.get("/metrics")
    after = scrape(client)
    changed = {key for key in after if key[0].startswith("cds_requests") and after[key] != before.get(key)}
    assert changed == set()


# --- cards and feedback --------------------------------------------------------------------------

def test_cards_are_counted_by_rule(client: FlaskClient) -> None:
    before = {rule: value(client, "cds_cards_total", rule=rule) for rule in ("admin-96372", "drug-waste-modifier")}
    fired: list[str] = []
    for _ in range(2):
        fired += topics(client.post(DISCHARGE, json=request_01()).get_json())
    assert sorted(set(fired)) == ["admin-96372", "drug-waste-modifier"]
    for rule, count in before.items():
        assert value(client, "cds_cards_total", rule=rule) == count + fired.count(rule)


def test_feedback_is_counted_by_rule_and_outcome_once_per_new_entry(client: FlaskClient) -> None:
    cards = client.post(DISCHARGE, json=request_01()).get_json()["cards"]
    card = next(c for c in cards if c["source"]["topic"]["code"] == "admin-96372")
    overridden = {"rule": "admin-96372", "outcome": "overridden"}
    accepted = {"rule": "admin-96372", "outcome": "accepted"}
    unknown = {"rule": "unknown", "outcome": "overridden"}
    before = {k: value(client, "cds_feedback_total", **v) for k, v in
              {"overridden": overridden, "accepted": accepted, "unknown": unknown}.items()}

    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2025-03-04T15:20:00Z",
             "overrideReason": {"reason": card["overrideReasons"][0]}}
    assert client.post(DISCHARGE + "/feedback", json={"feedback": [entry]}).get_json()["stored"] == 1
    accept = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2025-03-04T15:21:00Z",
              "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    # the repeated entry is not stored again, and not counted again
    assert client.post(DISCHARGE + "/feedback", json={"feedback": [entry, accept]}).get_json()["stored"] == 1
    stranger = {"card": "0b6b6c1e-7d35-4e0e-9a53-1f8f4b7f6a11", "outcome": "overridden",
                "outcomeTimestamp": "2026-11-27T00:17:15.033Z"}
    assert client.post(ORDER_SIGN + "/feedback", json={"feedback": [stranger]}).get_json()["stored"] == 1

    assert value(client, "cds_feedback_total", **overridden) == before["overridden"] + 1
    assert value(client, "cds_feedback_total", **accepted) == before["accepted"] + 1
    assert value(client, "cds_feedback_total", **unknown) == before["unknown"] + 1
    feedback_calls = {"service": DISCHARGE_ID, "endpoint": "feedback", "status": "200"}
    assert registry("cds_requests_total", **feedback_calls) >= 2


# --- FHIR fetches through a service call ---------------------------------------------------------

@pytest.fixture
def stub(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    yield httpserver
    httpserver.check_handler_errors()


def fetches() -> dict[str, float]:
    return {outcome: registry("cds_fhir_fetches_total", outcome=outcome) for outcome in FHIR_OUTCOMES}


def moved(before: dict[str, float]) -> dict[str, float]:
    """The outcomes whose count changed, and by how much."""
    return {k: v - before[k] for k, v in fetches().items() if v != before[k]}


def test_fhir_searchsets_answered_200_count_ok(stub: HTTPServer, make_client: Callable[..., FlaskClient]) -> None:
    serve_scenario(stub)
    base = base_of(stub)
    client = make_client(fhir={"allowed_servers": [base]})
    before, timed = fetches(), registry("cds_fhir_fetch_duration_seconds_count")
    response = client.post(DISCHARGE, json=hook_request(base))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(stub.log) == 5
    assert moved(before) == {"ok": 5}
    assert registry("cds_fhir_fetch_duration_seconds_count") == timed + 5
    assert value(client, "cds_fhir_fetches_total", outcome="ok") == before["ok"] + 5


def test_fhir_server_answering_500_counts_http_error(
    stub: HTTPServer, make_client: Callable[..., FlaskClient]
) -> None:
    stub.expect_request(f"/fhir/Encounter/{ENCOUNTER}").respond_with_data("down", status=500)
    base = base_of(stub)
    client = make_client(fhir={"allowed_servers": [base]})
    before = fetches()
    assert client.post(DISCHARGE, json=hook_request(base, missing=("encounter",))).status_code == 412
    assert len(stub.log) == 1
    assert moved(before) == {"http_error": 1}


def test_fhir_read_answering_404_counts_not_found(stub: HTTPServer, make_client: Callable[..., FlaskClient]) -> None:
    stub.expect_request(f"/fhir/Encounter/{ENCOUNTER}").respond_with_data("", status=404)
    base = base_of(stub)
    client = make_client(fhir={"allowed_servers": [base]})
    before = fetches()
    client.post(DISCHARGE, json=hook_request(base, missing=("encounter",)))
    assert moved(before) == {"not_found": 1}


def test_next_link_off_the_server_counts_refused(stub: HTTPServer, make_client: Callable[..., FlaskClient]) -> None:
    base = base_of(stub)
    first, _ = paged_admins(f"{base_of(stub, '/fhir-evil')}/MedicationAdministration?page=2")
    stub.expect_request("/fhir/MedicationAdministration", query_string={"patient": PATIENT}).respond_with_json(first)
    client = make_client(fhir={"allowed_servers": [base]})
    before, timed = fetches(), registry("cds_fhir_fetch_duration_seconds_count")
    assert client.post(DISCHARGE, json=hook_request(base, missing=("administrations",))).status_code == 412
    assert requested(stub) == [("/fhir/MedicationAdministration", {"patient": PATIENT})]
    assert moved(before) == {"ok": 1, "refused": 1}
    assert registry("cds_fhir_fetch_duration_seconds_count") == timed + 1  # the refused GET was never sent


# --- FHIR fetch outcomes of the client itself ----------------------------------------------------

def fhir_client(base: str, *, deadline: float = 5.0, max_bytes: int = 1 << 20) -> FhirClient:
    return FhirClient(base, "tok", deadline=time.monotonic() + deadline, max_bytes=max_bytes)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def slow(_request: Request) -> Response:
    time.sleep(0.6)
    return Response("{}", content_type=FHIR_JSON)


@pytest.mark.parametrize("outcome", ["too_large", "invalid", "invalid-shape", "invalid-too-deep", "timeout",
                                     "timeout-before-sending", "unreachable", "not_found-not-ok"])
def test_each_failure_of_a_get_has_its_outcome(stub: HTTPServer, outcome: str) -> None:
    base = base_of(stub)
    url = f"{base}/Patient/p1"
    client = fhir_client(base)
    if outcome == "too_large":
        stub.expect_request("/fhir/Patient/p1").respond_with_json({"resourceType": "Patient", "name": "x" * 200})
        client = fhir_client(base, max_bytes=64)
    elif outcome == "invalid":
        stub.expect_request("/fhir/Patient/p1").respond_with_data("<html>", content_type="text/html")
    elif outcome == "invalid-shape":
        stub.expect_request("/fhir/Patient/p1").respond_with_json([1, 2])
    elif outcome == "invalid-too-deep":  # deeper than the limit of a hook's body, max_json_depth
        deep: Any = {"url": "http://example.org/leaf", "valueString": "x"}
        for _ in range(50):  # 101 levels of objects and arrays
            deep = {"url": "http://example.org/nest", "extension": [deep]}
        stub.expect_request("/fhir/Patient/p1").respond_with_json({"resourceType": "Patient", "extension": [deep]})
    elif outcome == "timeout":
        stub.expect_request("/fhir/Patient/p1").respond_with_handler(slow)
        client = fhir_client(base, deadline=0.2)
    elif outcome == "timeout-before-sending":
        client = fhir_client(base, deadline=-1)
    elif outcome == "unreachable":
        base = f"http://127.0.0.1:{closed_port()}/fhir"
        url, client = f"{base}/Patient/p1", fhir_client(base)
    else:
        stub.expect_request("/fhir/Patient/p1").respond_with_data("", status=410)
    expected = outcome.split("-")[0]
    before, timed = fetches(), registry("cds_fhir_fetch_duration_seconds_count")
    with pytest.raises(FhirDataUnavailable):
        client.get(url)  # without missing_ok a 404/410 fails too, as not_found
    assert moved(before) == {expected: 1}
    assert registry("cds_fhir_fetch_duration_seconds_count") == timed + (outcome != "timeout-before-sending")


def test_a_read_of_a_missing_resource_counts_not_found(stub: HTTPServer) -> None:
    stub.expect_request("/fhir/Patient/p1").respond_with_data("", status=404)
    before = fetches()
    assert fhir_client(base_of(stub)).read("Patient/p1") is None
    assert moved(before) == {"not_found": 1}
