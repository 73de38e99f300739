"""`cds-service serve` as a real gunicorn process over real HTTP, and the evaluate / check-config commands."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from cds_service.store import FeedbackStore
from tests.conftest import DEFAULT_CONFIG, FIXTURES, load_scenario, suggested_charges, topics
from tests.e2e.conftest import MAX_BODY_BYTES, STOP_TIMEOUT, Server, new_session, run_cli, write_config

ORDER_SIGN = "injection-billing-order-sign"
DISCHARGE = "injection-billing-encounter-discharge"
CLOSE = "injection-billing-encounter-close"
SANDBOX_ORIGIN = "http://127.0.0.1:8080"
ALL_KEYS = {"encounter", "administrations", "conditions", "charges", "coverage"}
SCENARIO_01 = FIXTURES / "01-happy-im-medicare.json"


def request_01() -> dict[str, Any]:
    return copy.deepcopy(load_scenario("01")["request"])


def assert_outcome(response: requests.Response, status: int) -> dict[str, Any]:
    """A JSON FHIR OperationOutcome with the status, never HTML or a traceback."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].split(";")[0].strip() == "application/json"
    assert "<html" not in response.text.lower()
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["diagnostics"]
    return body


@pytest.fixture(scope="module")
def response_01(server: Server, http: requests.Session) -> dict[str, Any]:
    response = http.post(server.url(f"/cds-services/{DISCHARGE}"), json=request_01(), timeout=30)
    assert response.status_code == 200, response.text[:500]
    body: dict[str, Any] = response.json()
    return body


# --- discovery ---------------------------------------------------------------------------------

def test_discovery_lists_the_three_services(server: Server, http: requests.Session) -> None:
    response = http.get(server.url("/cds-services"), timeout=10)
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert set(services) == {ORDER_SIGN, DISCHARGE, CLOSE}
    assert services[ORDER_SIGN]["hook"] == "order-sign"
    assert services[DISCHARGE]["hook"] == "encounter-discharge"
    close_hook = services[CLOSE]["hook"]
    assert "." in close_hook and close_hook not in ("encounter-discharge", "order-sign")
    assert set(services[ORDER_SIGN]["prefetch"]) == ALL_KEYS - {"charges"}
    assert set(services[DISCHARGE]["prefetch"]) == ALL_KEYS
    assert set(services[CLOSE]["prefetch"]) == ALL_KEYS


# --- a service call ----------------------------------------------------------------------------

def test_scenario_01_over_http_suggests_96372_and_j3420(response_01: dict[str, Any]) -> None:
    assert "admin-96372" in topics(response_01)
    card = next(c for c in response_01["cards"] if c["source"]["topic"]["code"] == "admin-96372")
    charges = suggested_charges({"cards": [card]})
    assert ("96372", 1, ()) in charges
    assert ("J3420", 1, ()) in charges
    for suggestion in card["suggestions"]:
        for action in suggestion["actions"]:
            item = action["resource"]
            assert action["type"] == "create"
            assert item["resourceType"] == "ChargeItem"
            assert item["status"] == "billable"
            assert item["subject"]["reference"] == "Patient/pt-4f2b4345"
            assert item["context"]["reference"] == "Encounter/enc-4f2b4345"
            assert item["occurrenceDateTime"] == "2025-03-04"
            assert [s["reference"] for s in item["service"]] == ["MedicationAdministration/ma-4f2b4345-1"]


# --- CORS as the CDS Hooks sandbox does it ------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/cds-services",
    f"/cds-services/{DISCHARGE}",
    f"/cds-services/{CLOSE}",
    f"/cds-services/{DISCHARGE}/feedback",
    "/healthz",
])
def test_sandbox_preflight_is_allowed(server: Server, http: requests.Session, path: str) -> None:
    response = http.options(server.url(path), timeout=10, headers={
        "Origin": SANDBOX_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    })
    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", SANDBOX_ORIGIN)
    allowed = {h.strip().lower() for h in response.headers.get("Access-Control-Allow-Headers", "").split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers.get("Access-Control-Allow-Methods", "").upper()


def test_discovery_preflight_and_cross_origin_get(server: Server, http: requests.Session) -> None:
    preflight = http.options(server.url("/cds-services"), timeout=10, headers={
        "Origin": SANDBOX_ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    })
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers.get("Access-Control-Allow-Headers", "").lower()
    response = http.get(server.url("/cds-services"), headers={"Origin": SANDBOX_ORIGIN}, timeout=10)
    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", SANDBOX_ORIGIN)


# --- 413 ---------------------------------------------------------------------------------------

def oversized_body() -> bytes:
    return json.dumps({**request_01(), "padding": "x" * (MAX_BODY_BYTES + 10_000)}).encode()


def chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_the_limit_is_413(server: Server, framing: str) -> None:
    body = oversized_body()
    data: bytes | Iterator[bytes] = body if framing == "content-length" else chunks(body)
    # A fresh connection: the server closes one after a 413, and a pooled one may not have noticed yet.
    with new_session() as session:
        response = session.post(
            server.url(f"/cds-services/{DISCHARGE}"), data=data, headers={"Content-Type": "application/json"},
            timeout=30,
        )
    sent = response.request.headers
    if framing == "chunked":
        assert sent.get("Transfer-Encoding") == "chunked" and "Content-Length" not in sent
    else:
        assert sent["Content-Length"] == str(len(body))
    assert_outcome(response, 413)


def test_server_still_answers_after_oversized_bodies(server: Server) -> None:
    body = oversized_body()
    for data in (body, chunks(body)):
        with new_session() as session:  # a fresh connection each, so a reset one cannot hide the answer
            session.post(server.url(f"/cds-services/{DISCHARGE}"), data=data,
                         headers={"Content-Type": "application/json"}, timeout=30).close()
    for _ in range(4):  # reach both workers
        with new_session() as session:
            assert session.get(server.url("/healthz"), timeout=10).status_code == 200
    with new_session() as session:
        ok = session.post(server.url(f"/cds-services/{DISCHARGE}"), json=request_01(), timeout=30)
        assert ok.status_code == 200


def test_body_just_under_the_limit_is_not_413(server: Server, http: requests.Session) -> None:
    body = json.dumps(request_01()).encode()
    assert len(body) < MAX_BODY_BYTES
    for data in (body, chunks(body)):
        response = http.post(server.url(f"/cds-services/{DISCHARGE}"), data=data,
                             headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 200, response.text[:300]


# --- other errors: JSON OperationOutcome, never HTML ---------------------------------------------

def test_unknown_service_is_404(server: Server, http: requests.Session) -> None:
    assert_outcome(http.post(server.url("/cds-services/no-such-service"), json=request_01(), timeout=10), 404)


def test_unknown_path_is_404_json(server: Server, http: requests.Session) -> None:
    assert_outcome(http.get(server.url("/no/such/path"), timeout=10), 404)


def test_get_on_a_service_is_405(server: Server, http: requests.Session) -> None:
    response = http.get(server.url(f"/cds-services/{DISCHARGE}"), timeout=10)
    assert_outcome(response, 405)
    assert "POST" in response.headers.get("Allow", "")


def test_text_plain_is_415(server: Server, http: requests.Session) -> None:
    response = http.post(server.url(f"/cds-services/{DISCHARGE}"), data=json.dumps(request_01()),
                         headers={"Content-Type": "text/plain"}, timeout=10)
    assert_outcome(response, 415)


def test_malformed_json_is_400(server: Server, http: requests.Session) -> None:
    response = http.post(server.url(f"/cds-services/{DISCHARGE}"), data=b'{"hook": "encounter-discharge",',
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert_outcome(response, 400)


# --- feedback ----------------------------------------------------------------------------------

def test_sandbox_feedback_without_override_reason_is_200(server: Server, http: requests.Session) -> None:
    body = {"feedback": [{"card": "0b6b6c1e-7d35-4e0e-9a53-1f8f4b7f6a11", "outcome": "overridden",
                          "outcomeTimestamp": "2026-11-27T00:17:15.033Z"}]}
    response = http.post(server.url(f"/cds-services/{DISCHARGE}/feedback"), json=body,
                         headers={"Origin": SANDBOX_ORIGIN}, timeout=10)
    assert response.status_code == 200, response.text[:500]
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", SANDBOX_ORIGIN)


def test_feedback_on_an_issued_card_is_stored_with_its_rule(
    server: Server, http: requests.Session, response_01: dict[str, Any]
) -> None:
    card = next(c for c in response_01["cards"] if c["source"]["topic"]["code"] == "admin-96372")
    reason = card["overrideReasons"][0] if card.get("overrideReasons") else {
        "system": "https://injection-billing.org/fhir/CodeSystem/override-reason", "code": "already-billed",
        "display": "Already billed on another charge or claim"}
    body = {"feedback": [{
        "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-27T00:20:00Z",
        "overrideReason": {"reason": reason, "userComment": "billed on the morning visit"},
    }]}
    response = http.post(server.url(f"/cds-services/{DISCHARGE}/feedback"), json=body, timeout=10)
    assert response.status_code == 200, response.text[:500]
    store = FeedbackStore(server.store_url)
    try:
        rows = store.feedback_for(card["uuid"])
    finally:
        store.dispose()
    assert len(rows) == 1
    assert rows[0]["outcome"] == "overridden"
    assert rows[0]["rule_id"] == "admin-96372"
    assert rows[0]["service"] == DISCHARGE
    assert rows[0]["override_code"] == reason["code"]
    assert rows[0]["user_comment"] == "billed on the morning visit"


# --- SIGTERM -----------------------------------------------------------------------------------

def test_sigterm_stops_the_server_within_15_seconds(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server(workers=2)
    with new_session() as session:
        assert session.get(srv.url("/healthz"), timeout=10).status_code == 200
    started = time.monotonic()
    code = srv.stop()
    assert code is not None, f"still running {STOP_TIMEOUT:.0f} s after SIGTERM:\n{srv.stderr()}"
    assert time.monotonic() - started < STOP_TIMEOUT
    assert code == 0, srv.stderr()


# --- the command line --------------------------------------------------------------------------

def test_evaluate_prints_the_response(server: Server, tmp_path: Path) -> None:
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request_01()))
    result = run_cli("evaluate", str(request_file), "--config", str(server.config))
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert "admin-96372" in topics(response)
    assert ("96372", 1, ()) in suggested_charges(response)
    assert ("J3420", 1, ()) in suggested_charges(response)


def test_evaluate_takes_a_scenario_file_as_it_is(server: Server) -> None:
    """A scenario file (tests/fixtures, ../shared/scenarios) holds the request under "request"."""
    result = run_cli("evaluate", str(next(FIXTURES.glob("01-*.json"))), "--config", str(server.config))
    assert result.returncode == 0, result.stderr
    assert ("J3420", 1, ()) in suggested_charges(json.loads(result.stdout))


@pytest.mark.parametrize(("content", "said"), [
    ('{"request": 5}', 'expected a CDS Hooks request (a JSON object with hook, hookInstance and context), or a '
                       'scenario file with one under "request"; this has no "hook"'),
    ('[1, 2]', 'this has no "hook"'),
    ('{"hook": "patient-view", "hookInstance": "x", "context": {}}', "hook 'patient-view' is none of this "
     "service's hooks (encounter-discharge, order-sign, org.injection-billing.encounter-close); name a service "
     "with --service"),
])
def test_evaluate_says_what_it_expected(server: Server, tmp_path: Path, content: str, said: str) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text(content)
    result = run_cli("evaluate", str(odd), "--config", str(server.config))
    assert (result.returncode, result.stdout) == (2, "")
    assert said in result.stderr


def test_a_port_in_use_is_one_line_and_exit_2(server: Server) -> None:
    result = run_cli("serve", "--config", str(server.config), "--port", str(server.port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"cds-service serve: 127.0.0.1:{server.port} is in use. Stop what holds it, or serve on another port: "
        f"make run PORT={server.port + 1}, cds-service serve --port {server.port + 1}, or server.port in the "
        "configuration."]


@pytest.mark.parametrize("content", ["this is not JSON\n", '{"hook": '])
def test_evaluate_refuses_a_non_json_file(server: Server, tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = run_cli("evaluate", str(bad), "--config", str(server.config))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_evaluate_refuses_a_missing_file(server: Server, tmp_path: Path) -> None:
    result = run_cli("evaluate", str(tmp_path / "missing.json"), "--config", str(server.config))
    assert result.returncode == 2
    assert "missing.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_default() -> None:
    result = run_cli("check-config", str(DEFAULT_CONFIG))
    assert result.returncode == 0, result.stderr


def test_check_config_lists_every_violation_by_path(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad.yaml", tmp_path / "cds.db", {"fhir": {"max_pages": "x"}})
    data = yaml.safe_load(path.read_text())
    del data["store"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if str(path) not in line]
    max_pages = [line for line in lines if "fhir/max_pages" in line]
    store = [line for line in lines if "store" in line]
    assert max_pages and store and set(max_pages).isdisjoint(store), result.stderr
    assert "Traceback" not in result.stderr
