"""Prefetch fault injection with pytest-httpserver stubs: allow-list, token, errors, time, size, links."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.fhir.client import is_allowed, is_under
from tests.conftest import load_scenario, suggested_charges, topics

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
AUTH = {"access_token": "tok-123", "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"}
KEYS = ("encounter", "administrations", "conditions", "charges", "coverage")
PATIENT = "pt-4f2b4345"
ENCOUNTER = "enc-4f2b4345"
FHIR_JSON = "application/fhir+json"
# Where each missing key is fetched from (path below the base, query), given scenario 01's context.
FETCHES = {
    "encounter": (f"/Encounter/{ENCOUNTER}", {}),
    "administrations": ("/MedicationAdministration", {"patient": PATIENT}),
    "conditions": ("/Condition", {"patient": PATIENT}),
    "charges": ("/ChargeItem", {"context": f"Encounter/{ENCOUNTER}"}),
    "coverage": ("/Coverage", {"patient": PATIENT, "status": "active"}),
}


# --- helpers -------------------------------------------------------------------------------------

def base_of(server: HTTPServer, path: str = "/fhir") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def scenario_prefetch() -> dict[str, Any]:
    prefetch: dict[str, Any] = copy.deepcopy(load_scenario("01")["request"]["prefetch"])
    for value in prefetch.values():
        value.pop("link", None)  # self links to 127.0.0.1:9; nothing to follow
    return prefetch


def hook_request(fhir_server: str | None, *, missing: tuple[str, ...] = KEYS, **sent: Any) -> dict[str, Any]:
    """Scenario 01 with the `missing` keys deleted from prefetch (and `sent` keys overriding)."""
    body: dict[str, Any] = copy.deepcopy(load_scenario("01")["request"])
    for key in missing:
        del body["prefetch"][key]
    body["prefetch"].update(sent)
    if fhir_server is None:
        del body["fhirServer"]
    else:
        body["fhirServer"] = fhir_server
        body["fhirAuthorization"] = dict(AUTH)
    return body


def serve_scenario(server: HTTPServer, prefix: str = "/fhir", *, skip: tuple[str, ...] = ()) -> None:
    """Answer scenario 01's five queries below prefix (except the `skip` keys)."""
    prefetch = scenario_prefetch()
    for key, (path, _query) in FETCHES.items():
        if key not in skip:
            server.expect_request(prefix + path, method="GET").respond_with_json(prefetch[key], content_type=FHIR_JSON)


def requested(server: HTTPServer) -> list[tuple[str, dict[str, str]]]:
    return [(request.path, request.args.to_dict()) for request, _ in server.log]


def assert_outcome(response: Any, status: int = 412) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["severity"] == "error"
    assert body["issue"][0]["code"] == "incomplete"
    assert body["issue"][0]["diagnostics"]
    assert "tok-123" not in response.get_data(as_text=True)
    return body


def assert_happy(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert topics(body) == ["admin-96372", "drug-waste-modifier"]  # scenario 01: Medicare, container unknown
    assert sorted((c, u) for c, u, _ in suggested_charges(body)) == [("96372", 1), ("J3420", 1)]
    return body


@pytest.fixture
def stub(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    yield httpserver
    httpserver.check_handler_errors()


@pytest.fixture
def client_for(make_client: Callable[..., FlaskClient]) -> Callable[..., FlaskClient]:
    """client_for(allowed_servers, **fhir_settings) -> a test client of an app with those fhir settings."""

    def make(allowed: list[str], **fhir: Any) -> FlaskClient:
        return make_client(fhir={"allowed_servers": allowed, **fhir})

    return make


@pytest.fixture
def start_stub() -> Iterator[Callable[..., HTTPServer]]:
    """Extra stub servers on 127.0.0.1 (another port), stopped after the test."""
    servers: list[HTTPServer] = []

    def start(*, threaded: bool = False) -> HTTPServer:
        server = HTTPServer(host="127.0.0.1", port=0, threaded=threaded)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.clear()
        if server.is_running():
            server.stop()


# --- the token, the keys fetched, null keys ------------------------------------------------------

def test_all_missing_keys_are_fetched_with_the_bearer_token(
    stub: HTTPServer, client_for: Callable[..., FlaskClient]
) -> None:
    serve_scenario(stub)
    base = base_of(stub)
    response = client_for([base]).post(DISCHARGE, json=hook_request(base))
    assert_happy(response)
    assert sorted(requested(stub)) == sorted(("/fhir" + path, query) for path, query in FETCHES.values())
    assert [request.headers.get("Authorization") for request, _ in stub.log] == ["Bearer tok-123"] * len(FETCHES)


def test_medication_reference_outside_any_bundle_is_read_from_the_server(
    stub: HTTPServer, client_for: Callable[..., FlaskClient]
) -> None:
    """Every key sent; the current administration names its drug only by `Medication/med-b12`."""
    prefetch = scenario_prefetch()
    admin = prefetch["administrations"]["entry"][0]["resource"]
    concept = admin.pop("medicationCodeableConcept")
    admin["medicationReference"] = {"reference": "Medication/med-b12"}
    stub.expect_request("/fhir/Medication/med-b12", method="GET").respond_with_json(
        {"resourceType": "Medication", "id": "med-b12", "code": concept}, content_type=FHIR_JSON)
    base = base_of(stub)
    response = client_for([base]).post(DISCHARGE, json=hook_request(base, **prefetch))
    assert_happy(response)
    assert requested(stub) == [("/fhir/Medication/med-b12", {})]
    assert stub.log[0][0].headers.get("Authorization") == "Bearer tok-123"


def test_keys_sent_as_null_are_never_fetched(stub: HTTPServer, client_for: Callable[..., FlaskClient]) -> None:
    serve_scenario(stub)
    base = base_of(stub)
    request = hook_request(base, missing=KEYS, charges=None, conditions=None)
    response = client_for([base]).post(DISCHARGE, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "admin-96372" in topics(response.get_json())
    paths = [path for path, _ in requested(stub)]
    assert sorted(paths) == ["/fhir/Coverage", f"/fhir/Encounter/{ENCOUNTER}", "/fhir/MedicationAdministration"]


def test_all_keys_null_makes_no_request_and_answers_200(
    stub: HTTPServer, client_for: Callable[..., FlaskClient]
) -> None:
    serve_scenario(stub)
    base = base_of(stub)
    request = hook_request(base, missing=KEYS, **dict.fromkeys(KEYS))
    response = client_for([base]).post(DISCHARGE, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"cards": []}
    assert stub.log == []


# --- the allow-list ------------------------------------------------------------------------------

def test_fhir_server_not_allowed_is_412_without_any_request(
    stub: HTTPServer, client_for: Callable[..., FlaskClient]
) -> None:
    serve_scenario(stub)
    response = client_for([base_of(stub, "/other")]).post(DISCHARGE, json=hook_request(base_of(stub)))
    assert_outcome(response)
    assert stub.log == []


@pytest.mark.parametrize("server_path", ["/fhir-evil", "/", "", "/fhi", "/FHIR"])
def test_allowed_base_does_not_allow_a_sibling_or_parent_path(
    stub: HTTPServer, client_for: Callable[..., FlaskClient], server_path: str
) -> None:
    serve_scenario(stub, "/fhir")
    serve_scenario(stub, "/fhir-evil")
    serve_scenario(stub, "")
    response = client_for([base_of(stub)]).post(DISCHARGE, json=hook_request(base_of(stub, server_path)))
    assert_outcome(response)
    assert stub.log == []


def test_https_entry_does_not_allow_http(stub: HTTPServer, client_for: Callable[..., FlaskClient]) -> None:
    serve_scenario(stub)
    allowed = f"https://127.0.0.1:{stub.port}/fhir"
    response = client_for([allowed]).post(DISCHARGE, json=hook_request(base_of(stub)))
    assert_outcome(response)
    assert stub.log == []


def test_allowed_base_allows_a_deeper_path_and_a_trailing_slash(
    stub: HTTPServer, client_for: Callable[..., FlaskClient]
) -> None:
    """Positive control for the allow-list tests above."""
    serve_scenario(stub, "/fhir/r4")
    response = client_for([base_of(stub) + "/"]).post(DISCHARGE, json=hook_request(base_of(stub, "/fhir/r4/")))
    assert_happy(response)
    assert len(stub.log) == len(FETCHES)


BASE = "http://127.0.0.1:8081/fhir"


@pytest.mark.parametrize(
    ("server", "allowed", "expected"),
    [
        (BASE, [BASE], True),
        (BASE + "/", [BASE], True),
        (BASE + "/r4", [BASE], True),
        (BASE, [BASE + "/"], True),
        (BASE, ["https://launch.smarthealthit.org/v/r4/fhir", BASE], True),
        ("http://127.0.0.1:8081/fhir-evil", [BASE], False),
        ("http://127.0.0.1:8081/fhirx/r4", [BASE], False),
        ("http://127.0.0.1:8081/", [BASE], False),
        ("http://127.0.0.1:8081", [BASE], False),
        ("http://127.0.0.1:8082/fhir", [BASE], False),
        ("http://127.0.0.1/fhir", [BASE], False),
        ("https://127.0.0.1:8081/fhir", [BASE], False),
        ("http://127.0.0.1:8081/fhir", ["https://127.0.0.1:8081/fhir"], False),
        ("http://127.0.0.1:443/fhir", ["https://127.0.0.1/fhir"], False),
        ("https://127.0.0.1/fhir", ["https://127.0.0.1:443/fhir"], True),
        ("http://127.0.0.1:80/fhir", ["http://127.0.0.1/fhir"], True),
        ("http://user:pw@127.0.0.1:8081/fhir", [BASE], False),
        ("ftp://127.0.0.1:8081/fhir", [BASE], False),
        ("http://127.0.0.1:99999/fhir", [BASE], False),
        ("not a url", [BASE], False),
        (BASE, [], False),
    ],
)
def test_is_allowed(server: str, allowed: list[str], expected: bool) -> None:
    assert is_allowed(server, allowed) is expected


def test_is_under_is_segment_wise() -> None:
    assert is_under("http://127.0.0.1:8081/fhir/Encounter/1", BASE)
    assert not is_under("http://127.0.0.1:8081/fhir-evil/Encounter/1", BASE)
    assert not is_under("http://127.0.0.1:8081/Encounter/1", BASE)


def test_is_under_rejects_dot_segments_leaving_the_base() -> None:
    assert not is_under("http://127.0.0.1:8081/fhir/../evil/Encounter/1", BASE)


# --- fhirServer missing --------------------------------------------------------------------------

def test_missing_fhir_server_with_missing_keys_is_412(stub: HTTPServer, client_for: Callable[..., FlaskClient]) -> None:
    serve_scenario(stub)
    request = hook_request(None, missing=("coverage",))
    assert "fhirServer" not in request and "fhirAuthorization" not in request
    response = client_for([base_of(stub)]).post(DISCHARGE, json=request)
    assert_outcome(response)
    assert stub.log == []


# --- error statuses and redirects ----------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 401, 403, 404, 400, 503])
def test_error_status_is_412(stub: HTTPServer, client_for: Callable[..., FlaskClient], status: int) -> None:
    """One failing search (coverage) fails the call; a 404 on a search is an error too (only reads may 404)."""
    serve_scenario(stub, skip=("coverage",))
    stub.expect_request("/fhir/Coverage").respond_with_json(
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]},
        status=status, content_type=FHIR_JSON)
    base = base_of(stub)
    response = client_for([base]).post(DISCHARGE, json=hook_request(base))
    assert_outcome(response)
    coverage = [request for request, _ in stub.log if request.path == "/fhir/Coverage"]
    assert len(coverage) == 1
    assert coverage[0].headers.get("Authorization") == "Bearer tok-123"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_412_and_not_followed(
    stub: HTTPServer, start_stub: Callable[..., HTTPServer], client_for: Callable[..., FlaskClient],
    wait_prefetch_idle: Callable[[], None], status: int,
) -> None:
    elsewhere = start_stub()
    serve_scenario(elsewhere)
    target = f"{base_of(elsewhere)}/Encounter/{ENCOUNTER}"
    stub.expect_request(f"/fhir/Encounter/{ENCOUNTER}").respond_with_data(
        "", status=status, headers={"Location": target})
    base = base_of(stub)
    response = client_for([base, base_of(elsewhere)]).post(DISCHARGE, json=hook_request(base, missing=("encounter",)))
    assert_outcome(response)
    wait_prefetch_idle()
    assert requested(stub) == [(f"/fhir/Encounter/{ENCOUNTER}", {})]
    assert elsewhere.log == []  # so the token never went there


# --- time ----------------------------------------------------------------------------------------

def test_slow_server_is_412_within_the_deadline(
    start_stub: Callable[..., HTTPServer], client_for: Callable[..., FlaskClient],
    wait_prefetch_idle: Callable[[], None],
) -> None:
    sleep = 6.0
    slow = start_stub(threaded=True)
    release = threading.Event()
    seen: list[str] = []
    prefetch = scenario_prefetch()

    def answer_late(request: Request) -> Response:
        seen.append(request.path)
        release.wait(sleep)
        return Response(json.dumps(prefetch["coverage"]), content_type=FHIR_JSON)

    slow.expect_request("/fhir/Coverage").respond_with_handler(answer_late)
    base = base_of(slow)
    client = client_for([base], deadline_seconds=1)
    try:
        started = time.monotonic()
        response = client.post(DISCHARGE, json=hook_request(base, missing=("coverage",)))
        elapsed = time.monotonic() - started
        assert_outcome(response)
        assert elapsed < sleep - 2.5, f"answered after {elapsed:.2f} s with a 1 s deadline"
        assert seen == ["/fhir/Coverage"]
    finally:
        release.set()
        wait_prefetch_idle()


# --- links ---------------------------------------------------------------------------------------

def paged_admins(next_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scenario 01's administrations split over two pages, the first linking to next_url."""
    bundle = scenario_prefetch()["administrations"]
    first, second = copy.deepcopy(bundle), copy.deepcopy(bundle)
    first["entry"], second["entry"] = bundle["entry"][:1], bundle["entry"][1:]
    first["link"] = [{"relation": "next", "url": next_url}]
    return first, second


def test_next_link_on_the_server_is_followed_with_the_token(
    stub: HTTPServer, client_for: Callable[..., FlaskClient]
) -> None:
    """Positive control for the off-server link tests below."""
    base = base_of(stub)
    first, second = paged_admins(f"{base}/MedicationAdministration?patient={PATIENT}&_offset=1")
    stub.expect_request("/fhir/MedicationAdministration", query_string={"patient": PATIENT}).respond_with_json(first)
    stub.expect_request("/fhir/MedicationAdministration",
                        query_string={"patient": PATIENT, "_offset": "1"}).respond_with_json(second)
    response = client_for([base]).post(DISCHARGE, json=hook_request(base, missing=("administrations",)))
    assert_happy(response)
    assert requested(stub) == [("/fhir/MedicationAdministration", {"patient": PATIENT}),
                               ("/fhir/MedicationAdministration", {"patient": PATIENT, "_offset": "1"})]
    assert {request.headers.get("Authorization") for request, _ in stub.log} == {"Bearer tok-123"}


@pytest.mark.parametrize("where", ["other-port", "same-port-other-path", "https"])
def test_next_link_off_the_server_is_412_and_not_followed(
    stub: HTTPServer, start_stub: Callable[..., HTTPServer], client_for: Callable[..., FlaskClient],
    wait_prefetch_idle: Callable[[], None], where: str,
) -> None:
    elsewhere = start_stub()
    next_url = {
        "other-port": f"{base_of(elsewhere)}/MedicationAdministration?page=2",
        "same-port-other-path": f"{base_of(stub, '/fhir-evil')}/MedicationAdministration?page=2",
        "https": f"https://127.0.0.1:{stub.port}/fhir/MedicationAdministration?page=2",
    }[where]
    first, second = paged_admins(next_url)
    stub.expect_request("/fhir/MedicationAdministration", query_string={"patient": PATIENT}).respond_with_json(first)
    stub.expect_request("/fhir-evil/MedicationAdministration").respond_with_json(second)
    stub.expect_request("/fhir/MedicationAdministration").respond_with_json(second)
    elsewhere.expect_request("/fhir/MedicationAdministration").respond_with_json(second)
    base = base_of(stub)
    response = client_for([base]).post(DISCHARGE, json=hook_request(base, missing=("administrations",)))
    assert_outcome(response)
    wait_prefetch_idle()
    assert requested(stub) == [("/fhir/MedicationAdministration", {"patient": PATIENT})]
    assert elsewhere.log == []


def test_next_link_escaping_with_dot_segments_is_412_and_not_followed(
    stub: HTTPServer, client_for: Callable[..., FlaskClient], wait_prefetch_idle: Callable[[], None]
) -> None:
    base = base_of(stub)
    first, second = paged_admins(f"{base}/../evil/MedicationAdministration?page=2")
    stub.expect_request("/fhir/MedicationAdministration", query_string={"patient": PATIENT}).respond_with_json(first)
    stub.expect_request("/evil/MedicationAdministration").respond_with_json(second)
    response = client_for([base]).post(DISCHARGE, json=hook_request(base, missing=("administrations",)))
    wait_prefetch_idle()
    assert [path for path, _ in requested(stub)] == ["/fhir/MedicationAdministration"]  # never /evil
    assert_outcome(response)


# --- size and content ----------------------------------------------------------------------------

def big_bundle(min_bytes: int) -> dict[str, Any]:
    bundle = scenario_prefetch()["administrations"]
    entry = bundle["entry"][1]
    while len(json.dumps(bundle)) <= min_bytes:
        bundle["entry"].append(copy.deepcopy(entry))
    return bundle


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_response_above_max_response_bytes_is_412(
    stub: HTTPServer, client_for: Callable[..., FlaskClient], declared: bool
) -> None:
    limit = 4096
    payload = json.dumps(big_bundle(5 * limit)).encode()

    def answer(_request: Request) -> Response:
        if declared:
            return Response(payload, content_type=FHIR_JSON)
        return Response(iter([payload[i:i + 1000] for i in range(0, len(payload), 1000)]), content_type=FHIR_JSON)

    stub.expect_request("/fhir/MedicationAdministration").respond_with_handler(answer)
    base = base_of(stub)
    response = client_for([base], max_response_bytes=limit).post(
        DISCHARGE, json=hook_request(base, missing=("administrations",)))
    assert_outcome(response)
    assert len(stub.log) == 1
    assert ("Content-Length" in stub.log[0][1].headers) is declared


def test_response_within_max_response_bytes_is_used(stub: HTTPServer, client_for: Callable[..., FlaskClient]) -> None:
    """Positive control: the same limit with a small answer."""
    serve_scenario(stub)
    base = base_of(stub)
    response = client_for([base], max_response_bytes=4096).post(
        DISCHARGE, json=hook_request(base, missing=("coverage",)))
    assert_happy(response)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html><body>Login required</body></html>", "text/html"),
        ("", FHIR_JSON),
        ("{\"resourceType\": \"Bundle\", ", FHIR_JSON),
        ("[]", FHIR_JSON),
        ("\"Bundle\"", "application/json"),
    ],
    ids=["html", "empty", "truncated-json", "json-array", "json-string"],
)
def test_non_json_or_non_resource_200_is_412(
    stub: HTTPServer, client_for: Callable[..., FlaskClient], body: str, content_type: str
) -> None:
    stub.expect_request("/fhir/Coverage").respond_with_data(body, status=200, content_type=content_type)
    base = base_of(stub)
    response = client_for([base]).post(DISCHARGE, json=hook_request(base, missing=("coverage",)))
    assert_outcome(response)
    assert requested(stub) == [("/fhir/Coverage", {"patient": PATIENT, "status": "active"})]


def test_search_answered_without_a_bundle_is_412(stub: HTTPServer, client_for: Callable[..., FlaskClient]) -> None:
    stub.expect_request("/fhir/Coverage").respond_with_json(scenario_prefetch()["encounter"], content_type=FHIR_JSON)
    base = base_of(stub)
    response = client_for([base]).post(DISCHARGE, json=hook_request(base, missing=("coverage",)))
    assert_outcome(response)


def test_server_down_is_412(start_stub: Callable[..., HTTPServer], client_for: Callable[..., FlaskClient]) -> None:
    gone = start_stub()
    base = base_of(gone)
    gone.stop()  # the port is now closed: connection refused
    response = client_for([base]).post(DISCHARGE, json=hook_request(base))
    assert_outcome(response)
