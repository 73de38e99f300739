"""CDS Hooks 2.0 over the Flask test client: one test per status code and per spec rule."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, Response
from flask.testing import FlaskClient

from cds_service import create_app
from tests.conftest import FIXTURES, load_scenario, suggested_charges, topics

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
ORDER_SIGN = "/cds-services/injection-billing-order-sign"
CLOSE = "/cds-services/injection-billing-encounter-close"


def request_01() -> dict[str, Any]:
    return copy.deepcopy(load_scenario("01")["request"])


def assert_outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


# --- discovery ---------------------------------------------------------------------------------

def test_discovery_lists_the_three_services(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert services["injection-billing-order-sign"]["hook"] == "order-sign"
    assert services["injection-billing-encounter-discharge"]["hook"] == "encounter-discharge"
    assert services["injection-billing-encounter-close"]["hook"] == "org.injection-billing.encounter-close"
    assert set(services["injection-billing-order-sign"]["prefetch"]) == {
        "encounter", "administrations", "conditions", "coverage"}
    for service in services.values():
        assert service["title"] and service["description"]
    assert set(services["injection-billing-encounter-close"]["prefetch"]) == {
        "encounter", "administrations", "conditions", "charges", "coverage"}


HOOK_TOKENS = {
    "order-sign": {"userId", "patientId", "encounterId"},
    "encounter-discharge": {"userId", "patientId", "encounterId"},
    "org.injection-billing.encounter-close": {"userId", "patientId", "encounterId"},
}
# The spec's recommended query subset: reads, and type searches on reference, token and date parameters.
ALLOWED_PARAMS = {"patient", "context", "status", "encounter", "subject", "_count", "_sort"}


def test_prefetch_templates_use_only_hook_tokens_and_the_query_subset(client: FlaskClient) -> None:
    for service in client.get("/cds-services").get_json()["services"]:
        for template in service["prefetch"].values():
            tokens = set(re.findall(r"\{\{context\.(\w+)\}\}", template))
            assert tokens <= HOOK_TOKENS[service["hook"]], template
            assert "{{" not in re.sub(r"\{\{context\.\w+\}\}", "", template)
            path, _, query = template.partition("?")
            assert re.fullmatch(r"[A-Z][A-Za-z]+(/\{\{context\.\w+\}\})?", path), template
            params = {p.split("=")[0] for p in query.split("&") if p}
            assert params <= ALLOWED_PARAMS, template


def test_close_hook_name_comes_from_configuration(make_config: Callable[..., Path]) -> None:
    app = create_app(str(make_config(hooks={"close_hook": "com.example.visit-close"})))
    services = {s["id"]: s["hook"] for s in app.test_client().get("/cds-services").get_json()["services"]}
    assert services["injection-billing-encounter-close"] == "com.example.visit-close"
    request = request_01()
    request["hook"] = "com.example.visit-close"
    assert app.test_client().post(CLOSE, json=request).status_code == 200
    app.extensions["cds"].store.dispose()


# --- 200 ---------------------------------------------------------------------------------------

def test_b12_im_injection_gets_one_96372_card(client: FlaskClient) -> None:
    response = client.post(DISCHARGE, json=request_01())
    assert response.status_code == 200
    body = response.get_json()
    assert topics(body) == ["admin-96372", "drug-waste-modifier"]  # Medicare Part B, container unknown
    assert suggested_charges(body) == [("96372", 1, ()), ("J3420", 1, ())]
    card = body["cards"][0]
    assert card["indicator"] == "info"
    assert card["source"]["topic"]["display"]
    assert card["selectionBehavior"] == "any"
    charge = card["suggestions"][0]["actions"][0]["resource"]
    assert charge == {
        "resourceType": "ChargeItem",
        "status": "billable",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "96372"}]},
        "subject": {"reference": "Patient/pt-4f2b4345"},
        "context": {"reference": "Encounter/enc-4f2b4345"},
        "occurrenceDateTime": "2025-03-04",
        "quantity": {"value": 1},
        "service": [{"reference": "MedicationAdministration/ma-4f2b4345-1"}],
    }
    assert card["suggestions"][0]["actions"][1]["resource"]["code"]["coding"][0] == {
        "system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "J3420"}


def test_suggested_charge_items_are_valid_r4(client: FlaskClient) -> None:
    from fhir.resources.R4B.chargeitem import ChargeItem

    body = client.post(DISCHARGE, json=request_01()).get_json()
    assert body["cards"][0]["suggestions"]
    for card in body["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                ChargeItem.model_validate(action["resource"])


def test_same_request_on_the_custom_close_hook(client: FlaskClient) -> None:
    request = request_01()
    request["hook"] = "org.injection-billing.encounter-close"
    body = client.post(CLOSE, json=request).get_json()
    assert suggested_charges(body) == [("96372", 1, ()), ("J3420", 1, ())]


def test_order_sign_charges_are_planned(client: FlaskClient) -> None:
    body = client.post(ORDER_SIGN, json=load_scenario("02")["request"]).get_json()
    assert topics(body) == ["admin-96372"]
    statuses = {a["resource"]["status"] for a in body["cards"][0]["suggestions"][0]["actions"]}
    assert statuses == {"planned"}
    assert suggested_charges(body) == [("96372", 1, ()), ("J3420", 1, ())]


def test_2000_mcg_order_is_two_units(client: FlaskClient) -> None:
    body = client.post(ORDER_SIGN, json=load_scenario("03")["request"]).get_json()
    assert ("J3420", 2, ()) in suggested_charges(body)


def test_facility_setting_gets_no_96372(client: FlaskClient) -> None:
    body = client.post(DISCHARGE, json=load_scenario("13")["request"]).get_json()
    assert "96372" not in [code for code, _, _ in suggested_charges(body)]


def test_card_uuids_are_stable_for_a_hook_instance_and_unique_per_card(client: FlaskClient) -> None:
    first = client.post(DISCHARGE, json=request_01()).get_json()
    again = client.post(DISCHARGE, json=request_01()).get_json()
    assert [c["uuid"] for c in first["cards"]] == [c["uuid"] for c in again["cards"]]
    other = request_01()
    other["hookInstance"] = "another-instance"
    assert client.post(DISCHARGE, json=other).get_json()["cards"][0]["uuid"] != first["cards"][0]["uuid"]


def test_nothing_to_say_is_an_empty_card_list(client: FlaskClient) -> None:
    request = request_01()
    request["prefetch"]["administrations"]["entry"] = []
    assert client.post(DISCHARGE, json=request).get_json() == {"cards": []}


def test_key_sent_as_null_is_not_needed(client: FlaskClient) -> None:
    request = request_01()  # its fhirServer, 127.0.0.1:9, has nothing listening: a fetch would be a 412
    request["prefetch"]["charges"] = None
    request["prefetch"]["coverage"] = None
    response = client.post(DISCHARGE, json=request)
    assert response.status_code == 200
    assert topics(response.get_json()) == ["admin-96372"]


def test_prefetched_operation_outcome_counts_as_no_data(client: FlaskClient) -> None:
    request = request_01()
    request["prefetch"]["coverage"] = {"resourceType": "OperationOutcome",
                                       "issue": [{"severity": "error", "code": "timeout"}]}
    assert client.post(DISCHARGE, json=request).status_code == 200


def test_invalid_resource_gets_its_own_card_and_the_rest_is_evaluated(client: FlaskClient) -> None:
    request = request_01()
    entries = request["prefetch"]["administrations"]["entry"]
    entries[1]["resource"]["effectiveDateTime"] = "2025-02-30T10:15:00Z"  # no such day
    entries[2]["resource"]["effectivePeriod"] = {"start": "2025-01-01"}  # and effectiveDateTime: two of [x]
    body = client.post(DISCHARGE, json=request).get_json()
    assert sorted(topics(body)) == ["admin-96372", "drug-waste-modifier", "invalid-resource", "invalid-resource"]
    invalid = [c for c in body["cards"] if c["source"]["topic"]["code"] == "invalid-resource"]
    assert len(invalid) == 2
    assert invalid[0]["indicator"] == "warning" and invalid[0]["overrideReasons"]
    assert "MedicationAdministration/ma-4f2b4345-p30" in invalid[0]["summary"]
    assert "effectiveDateTime" in invalid[0]["detail"]
    assert "MedicationAdministration/ma-4f2b4345-p60" in invalid[1]["summary"]


@pytest.mark.parametrize("entry", [5, True, "x", {"resource": {}}])
def test_an_encounter_bundle_whose_entry_is_not_a_list_is_no_500(client: FlaskClient, entry: Any) -> None:
    request = request_01()
    request["prefetch"]["encounter"] = {"resourceType": "Bundle", "type": "searchset", "entry": entry}
    assert client.post(DISCHARGE, json=request).status_code == 200


def test_near_misses_of_r4_are_repaired_and_listed_in_one_info_card(client: FlaskClient) -> None:
    """A date-time without a zone is read in the encounter's (-05:00), a single object where R4 wants a list
    becomes a list of one, a list of one where R4 wants one value that value: the resources are billed, and
    one info card says what the EHR should fix. Something else wrong with a resource still sets it aside."""
    request = request_01()
    first = request["prefetch"]["administrations"]["entry"][0]["resource"]
    first["effectiveDateTime"] = "2025-03-04T10:15:00"
    first["performer"] = first["performer"][0]
    first["dosage"]["route"] = [first["dosage"]["route"]]
    body = client.post(DISCHARGE, json=request).get_json()
    assert sorted(topics(body)) == ["admin-96372", "drug-waste-modifier", "invalid-resource"]
    assert suggested_charges(body)[0][0] == "96372"
    (card,) = [c for c in body["cards"] if c["source"]["topic"]["code"] == "invalid-resource"]
    assert card["indicator"] == "info"
    assert card["summary"] == "1 resource read after repairing near-misses of FHIR R4; the EHR should send valid R4"
    detail = " ".join(card["detail"].split())
    assert "**MedicationAdministration/ma-4f2b4345-1** (from `administrations`)" in detail
    assert "effectiveDateTime: a date-time without a time zone; read in the encounter's offset (-05:00)" in detail
    assert "performer: one value where FHIR R4 wants a list; read as a list of one" in detail
    assert "dosage.route: a list of one where FHIR R4 wants one value; read as that value" in detail
    first["status"] = 5  # not a near-miss: the resource is set aside, as before
    body = client.post(DISCHARGE, json=request).get_json()
    (card,) = [c for c in body["cards"] if c["source"]["topic"]["code"] == "invalid-resource"]
    assert card["indicator"] == "warning" and "was left out" in card["summary"]
    assert "admin-96372" not in topics(body)


@pytest.mark.parametrize("ensure_ascii", [True, False])  # "\\u00a0" escaped, or the character in UTF-8
@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\u3000", "\x0b", "\x0c", "\x85"])
def test_a_string_of_other_whitespace_is_invalid_however_the_body_writes_it(
    client: FlaskClient, space: str, ensure_ascii: bool
) -> None:
    """FHIR's string pattern refuses a text of whitespace other than space, tab, CR and LF: the body's
    text check sends such a body to the Structs that check the pattern."""
    request = request_01()
    request["prefetch"]["conditions"]["entry"][0]["resource"]["code"]["text"] = space * 2
    raw = json.dumps(request, ensure_ascii=ensure_ascii).encode()
    body = client.post(DISCHARGE, data=raw, content_type="application/json").get_json()
    invalid = [c for c in body["cards"] if c["source"]["topic"]["code"] == "invalid-resource"]
    assert len(invalid) == 1 and "Condition/" in invalid[0]["summary"], topics(body)
    assert "code.text" in invalid[0]["detail"]


def test_a_plain_body_and_its_escaped_twin_get_the_same_cards(client: FlaskClient) -> None:
    request = request_01()
    request["prefetch"]["conditions"]["entry"][0]["resource"]["code"]["text"] = "Anémie pernicieuse, B12"
    answers = [client.post(DISCHARGE, data=json.dumps(request, ensure_ascii=ascii).encode(),
                           content_type="application/json").get_json() for ascii in (True, False)]
    assert answers[0] == answers[1] and "invalid-resource" not in topics(answers[0])


def test_history_admin_is_validated_on_what_the_frequency_rule_reads(client: FlaskClient) -> None:
    """Another encounter's administration: drug, status and date are checked; its dose is not read."""
    request = request_01()
    entries = request["prefetch"]["administrations"]["entry"]
    entries[2]["resource"]["dosage"]["dose"]["value"] = "a lot"  # not read: no card
    entries[1]["resource"]["status"] = ["completed"]  # read: a code is not a list
    body = client.post(DISCHARGE, json=request).get_json()
    invalid = [c for c in body["cards"] if c["source"]["topic"]["code"] == "invalid-resource"]
    assert len(invalid) == 1 and "status" in invalid[0]["detail"]
    assert "MedicationAdministration/ma-4f2b4345-p30" in invalid[0]["summary"]


def test_markdown_from_request_data_is_escaped(client: FlaskClient) -> None:
    request = request_01()
    resource = request["prefetch"]["administrations"]["entry"][0]["resource"]
    resource["medicationCodeableConcept"] = {"text": "B12 <script>alert(1)</script> [x](javascript:alert(1))"}
    card = client.post(DISCHARGE, json=request).get_json()["cards"][0]
    assert "<script>" not in card["detail"] and "](javascript" not in card["detail"]


# --- near-misses and the sandbox ---------------------------------------------------------------

def test_davinci_ri_near_miss_is_accepted(client: FlaskClient) -> None:
    request = json.loads((FIXTURES / "davinci-crd-ri_r4_ordersign_requestWithHydratedPrefetchBundle.json").read_text())
    assert request["fhirAuthorization"] is None and "type" not in request["context"]["draftOrders"]
    for key in ("encounter", "administrations", "conditions", "coverage"):
        request["prefetch"][key] = None
    response = client.post(ORDER_SIGN, json=request)
    assert response.status_code == 200
    # A DeviceRequest is no injection; the Bundle without type (R4 requires one) is read, and said so in one
    # info card.
    (card,) = response.get_json()["cards"]
    assert (card["source"]["topic"]["code"], card["indicator"]) == ("invalid-resource", "info")
    assert "**Bundle/(no id)** (from `context.draftOrders`): type: missing; read as a collection of its entries" \
        in card["detail"]


def sandbox_order_sign() -> dict[str, Any]:
    for line in (FIXTURES / "sandbox-observed-requests.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "cds-call" and record["method"] == "POST" and record["body"]["hook"] == "order-sign":
            body: dict[str, Any] = record["body"]
            return body
    raise AssertionError("no sandbox order-sign request")


def test_sandbox_order_sign_with_data_it_could_not_fetch(client: FlaskClient) -> None:
    request = sandbox_order_sign()
    # The sandbox's FHIR server (127.0.0.1:8081) is allowed in default.yaml but not running here.
    assert_outcome(client.post(ORDER_SIGN, json=request), 412)
    for key in ("administrations", "conditions", "coverage"):
        request["prefetch"][key] = None
    body = client.post(ORDER_SIGN, json=request).get_json()
    # Its draft MedicationRequest has no intent and no medication: not R4, so it is named, not billed (and its
    # Bundle without type is listed as repaired).
    assert topics(body) == ["invalid-resource", "invalid-resource"]
    assert [card["indicator"] for card in body["cards"]] == ["warning", "info"]
    assert "MedicationRequest/request-123" in body["cards"][0]["summary"]


def test_sandbox_cors_preflight(client: FlaskClient) -> None:
    for path in ("/cds-services", ORDER_SIGN, ORDER_SIGN + "/feedback"):
        response = client.options(path, headers={
            "Origin": "http://127.0.0.1:8080",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        })
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://127.0.0.1:8080")
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed


def test_cors_origin_allow_list(make_config: Callable[..., Path]) -> None:
    app = create_app(str(make_config(cors={"origins": ["https://ehr.example.org"]})))
    c = app.test_client()
    good = c.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    bad = c.get("/cds-services", headers={"Origin": "https://evil.example.com"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    assert "Access-Control-Allow-Origin" not in bad.headers
    app.extensions["cds"].store.dispose()


# --- 400 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["hook", "hookInstance", "context"])
def test_missing_required_field_is_400(client: FlaskClient, field: str) -> None:
    request = request_01()
    del request[field]
    body = assert_outcome(client.post(DISCHARGE, json=request), 400)
    assert field in body["issue"][0]["diagnostics"]


def test_hook_not_matching_the_service_is_400(client: FlaskClient) -> None:
    request = request_01()
    request["hook"] = "order-sign"
    assert_outcome(client.post(DISCHARGE, json=request), 400)


def test_fhir_authorization_without_fhir_server_is_400(client: FlaskClient) -> None:
    request = request_01()
    del request["fhirServer"]
    request["fhirAuthorization"] = {"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                    "scope": "user/*.read", "subject": "cds"}
    body = assert_outcome(client.post(DISCHARGE, json=request), 400)
    assert "fhirServer" in body["issue"][0]["diagnostics"]
    assert "t" != body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("field", ["patientId", "encounterId", "userId"])
def test_context_missing_a_required_field_is_400(client: FlaskClient, field: str) -> None:
    request = request_01()
    del request["context"][field]
    body = assert_outcome(client.post(DISCHARGE, json=request), 400)
    assert f"context: '{field}' is required" in body["issue"][0]["diagnostics"]


def test_order_sign_without_draft_orders_is_400(client: FlaskClient) -> None:
    request = copy.deepcopy(load_scenario("02")["request"])
    del request["context"]["draftOrders"]
    assert_outcome(client.post(ORDER_SIGN, json=request), 400)


def test_prefetch_value_that_is_not_a_resource_is_400(client: FlaskClient) -> None:
    request = request_01()
    request["prefetch"]["conditions"] = "Condition?patient=1"
    assert_outcome(client.post(DISCHARGE, json=request), 400)


def test_malformed_json_is_400(client: FlaskClient) -> None:
    response = client.post(DISCHARGE, data=b'{"hook": ', content_type="application/json")
    assert_outcome(response, 400)


def test_deeply_nested_json_is_400_not_a_crash(client: FlaskClient) -> None:
    response = client.post(DISCHARGE, data=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    assert_outcome(response, 400)
    nested: Any = {}
    for _ in range(200):
        nested = {"a": nested}
    request = request_01()
    request["context"]["extra"] = nested
    assert_outcome(client.post(DISCHARGE, json=request), 400)


def test_errors_do_not_echo_patient_data(client: FlaskClient) -> None:
    request = request_01()
    request["context"]["patientId"] = "has space SECRET-NAME"
    body = assert_outcome(client.post(DISCHARGE, json=request), 400)
    assert "SECRET-NAME" not in json.dumps(body)


# --- 404, 405, 413, 415 ------------------------------------------------------------------------

def test_unknown_service_is_404(client: FlaskClient) -> None:
    assert_outcome(client.post("/cds-services/no-such-service", json=request_01()), 404)
    assert_outcome(client.post("/cds-services/no-such-service/feedback", json={"feedback": []}), 404)


def test_unknown_path_is_json_404(client: FlaskClient) -> None:
    assert_outcome(client.get("/nope"), 404)


@pytest.mark.parametrize(("method", "path"), [("get", DISCHARGE), ("put", "/cds-services"),
                                              ("get", DISCHARGE + "/feedback"), ("delete", "/healthz")])
def test_wrong_method_is_405(client: FlaskClient, method: str, path: str) -> None:
    assert_outcome(getattr(client, method)(path), 405)


def test_body_over_the_limit_is_413(make_config: Callable[..., Path]) -> None:
    app = create_app(str(make_config(server={"max_body_bytes": 4096})))
    response = app.test_client().post(DISCHARGE, data=b'{"a": "' + b"x" * 5000 + b'"}',
                                      content_type="application/json")
    assert_outcome(response, 413)
    app.extensions["cds"].store.dispose()


def test_default_limit_is_5_mb(app: Flask) -> None:
    assert app.config["MAX_CONTENT_LENGTH"] == 5 * 1024 * 1024


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_body_that_is_not_json_is_415(client: FlaskClient, content_type: str | None) -> None:
    response = client.post(DISCHARGE, data=json.dumps(request_01()), content_type=content_type)
    assert_outcome(response, 415)


def test_fhir_json_content_type_is_accepted(client: FlaskClient) -> None:
    response = client.post(DISCHARGE, data=json.dumps(request_01()), content_type="application/fhir+json")
    assert response.status_code == 200


# --- 412 ---------------------------------------------------------------------------------------

def test_missing_key_without_fhir_server_is_412(client: FlaskClient) -> None:
    request = request_01()
    del request["prefetch"]["conditions"]
    del request["fhirServer"]
    assert_outcome(client.post(DISCHARGE, json=request), 412)


def test_missing_key_with_a_server_not_allowed_is_412(client: FlaskClient) -> None:
    request = request_01()
    del request["prefetch"]["conditions"]
    request["fhirServer"] = "https://evil.example.com/fhir"
    assert_outcome(client.post(DISCHARGE, json=request), 412)


def test_missing_key_with_the_server_down_is_412(client: FlaskClient) -> None:
    request = request_01()  # fhirServer http://127.0.0.1:9/fhir is allowed by the checker, not here
    del request["prefetch"]["charges"]
    assert_outcome(client.post(DISCHARGE, json=request), 412)


def test_order_sign_without_encounter_id_does_not_need_the_encounter(client: FlaskClient) -> None:
    request = copy.deepcopy(load_scenario("02")["request"])
    del request["context"]["encounterId"]
    del request["prefetch"]["encounter"]
    response = client.post(ORDER_SIGN, json=request)
    assert response.status_code == 200
    assert topics(response.get_json()) == ["admin-96372"]


# --- 500 ---------------------------------------------------------------------------------------

def test_unexpected_error_is_a_generic_500(app: Flask, client: FlaskClient) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("/secret/path/to/module.py line 42")

    app.extensions["cds"].renderer.render = explode  # fault injection
    body = assert_outcome(client.post(DISCHARGE, json=request_01()), 500)
    assert "secret" not in json.dumps(body) and "RuntimeError" not in json.dumps(body)


# --- health and feedback -----------------------------------------------------------------------

def test_healthz(app: Flask, client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    with app.extensions["cds"].store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE cards_issued"))
    assert_outcome(client.get("/healthz"), 503)


def test_feedback_is_stored_with_its_rule(app: Flask, client: FlaskClient) -> None:
    card = client.post(DISCHARGE, json=request_01()).get_json()["cards"][0]
    feedback = {"feedback": [{
        "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2025-03-04T15:20:00Z",
        "overrideReason": {"reason": card["overrideReasons"][0], "userComment": "billed on paper"},
    }]}
    response = client.post(DISCHARGE + "/feedback", json=feedback)
    assert response.status_code == 200
    assert response.get_json() == {"received": 1, "stored": 1}
    (row,) = app.extensions["cds"].store.feedback_for(card["uuid"])
    assert (row["rule_id"], row["outcome"], row["override_code"], row["service"]) == (
        "admin-96372", "overridden", "already-billed", "injection-billing-encounter-discharge")
    again = client.post(DISCHARGE + "/feedback", json=feedback)
    assert again.get_json() == {"received": 1, "stored": 0}


def test_accepted_feedback_keeps_the_suggestion_ids(app: Flask, client: FlaskClient) -> None:
    card = client.post(DISCHARGE, json=request_01()).get_json()["cards"][0]
    suggestion = card["suggestions"][0]["uuid"]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                              "acceptedSuggestions": [{"id": suggestion}],
                              "outcomeTimestamp": "2025-03-04T15:20:00.123Z"}]}
    assert client.post(DISCHARGE + "/feedback", json=feedback).status_code == 200
    (row,) = app.extensions["cds"].store.feedback_for(card["uuid"])
    assert row["accepted_suggestions"] == [suggestion]


@pytest.mark.parametrize(
    "entry",
    [
        {"card": "c", "outcome": "ignored", "outcomeTimestamp": "2025-03-04T15:20:00Z"},
        {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2025-03-04T15:20:00Z"},
        {"card": "c", "outcome": "overridden"},
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"},
        {"outcome": "overridden", "outcomeTimestamp": "2025-03-04T15:20:00Z"},
    ],
)
def test_invalid_feedback_is_400_and_stores_nothing(app: Flask, client: FlaskClient, entry: dict[str, Any]) -> None:
    assert_outcome(client.post(DISCHARGE + "/feedback", json={"feedback": [entry]}), 400)
    assert app.extensions["cds"].store.feedback_for("c") == []


def test_feedback_for_a_card_we_did_not_issue_is_kept_without_a_rule(app: Flask, client: FlaskClient) -> None:
    feedback = {"feedback": [{"card": "0b6b6c1e-7d35-4e0e-9a53-1f8f4b7f6a11", "outcome": "overridden",
                              "outcomeTimestamp": "2026-11-27T00:17:15.033Z"}]}  # what the sandbox sends
    assert client.post(ORDER_SIGN + "/feedback", json=feedback).status_code == 200
    (row,) = app.extensions["cds"].store.feedback_for("0b6b6c1e-7d35-4e0e-9a53-1f8f4b7f6a11")
    assert row["rule_id"] is None


def test_feedback_timestamp_that_is_no_real_instant_is_400(client: FlaskClient) -> None:
    """Found by schemathesis: it matched the pattern and then failed to parse (a 500)."""
    entry = {"card": "c", "outcome": "overridden", "outcomeTimestamp": "0000-00-00T00:00:00Z"}
    assert_outcome(client.post(DISCHARGE + "/feedback", json={"feedback": [entry]}), 400)


def test_card_text_agrees_with_its_suggestions(client: FlaskClient) -> None:
    """The detail says no drug line is suggested only when none is (the renderer sees the billing plan)."""
    card = client.post(DISCHARGE, json=request_01()).get_json()["cards"][0]
    assert "No drug line is suggested" not in card["detail"]
    request = request_01()
    del request["prefetch"]["administrations"]["entry"][0]["resource"]["dosage"]["dose"]
    card = client.post(DISCHARGE, json=request).get_json()["cards"][0]
    assert "No drug line is suggested" in card["detail"]


@pytest.mark.parametrize("origins", [["*"], ["https://ehr.example.org", "https://sandbox.cds-hooks.org"]])
def test_cors_headers_are_flask_cors_own_with_or_without_origin(
    make_config: Callable[..., Path], origins: list[str]
) -> None:
    """The service answers a request without Origin from what flask_cors said once at start: the same
    headers as flask_cors itself gives, on every path and method; with Origin, flask_cors answers."""
    from flask_cors import CORS

    from cds_service.web import cors

    ours = create_app(str(make_config(cors={"origins": origins}))).test_client()
    reference_app = Flask("reference")
    CORS(reference_app, origins=origins, **cors.OPTIONS)
    for rule in ("/cds-services", "/cds-services/<x>", "/healthz", "/nowhere"):
        reference_app.add_url_rule(rule, rule, lambda **_: "", methods=["GET", "POST"])
    reference = reference_app.test_client()

    def cors_headers(response: Any) -> list[tuple[str, str]]:  # Vary: Origin is on every answer (web/headers.py)
        return sorted((k, v) for k, v in response.headers.items() if k.startswith("Access-Control"))

    cases: list[dict[str, Any]] = [{}, {"Origin": "https://ehr.example.org"}, {"Origin": "https://evil.example.com"},
                                   {"Access-Control-Request-Private-Network": "true"}]
    for path in ("/cds-services", f"/cds-services/{DISCHARGE.rsplit('/', 1)[1]}", "/healthz", "/nowhere"):
        for headers in cases:
            for method in ("GET", "POST"):
                got = ours.open(path, method=method, headers=headers, json={} if method == "POST" else None)
                want = reference.open(path, method=method, headers=headers, json={} if method == "POST" else None)
                assert cors_headers(got) == cors_headers(want), (path, method, headers)
                names = [k.lower() for k, _ in got.headers.items()]
                assert len(names) == len(set(names)), got.headers  # nothing added twice
    preflight = {"Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Content-Type, Authorization"}
    assert cors_headers(ours.options(DISCHARGE, headers=preflight)) == cors_headers(
        reference.options("/cds-services/x", headers=preflight))


@pytest.mark.parametrize("name", ["Access-Control-Allow-Origin", "access-control-allow-origin"])
def test_a_response_with_its_own_allow_origin_is_left_to_flask_cors(
    make_config: Callable[..., Path], name: str
) -> None:
    """A view that sets Access-Control-Allow-Origin itself (in any case) keeps it, as flask_cors keeps it:
    the header is never added twice."""
    from flask_cors import CORS

    from cds_service.web import cors

    origins = ["https://ehr.example.org"]
    ours_app = create_app(str(make_config(cors={"origins": origins})))
    reference_app = Flask("reference")
    CORS(reference_app, origins=origins, **cors.OPTIONS)
    for app in (ours_app, reference_app):
        app.add_url_rule("/own-cors", "own_cors", lambda: Response("", headers={name: "https://own.example.org"}))
    got, want = ours_app.test_client().get("/own-cors"), reference_app.test_client().get("/own-cors")
    assert got.headers.getlist("Access-Control-Allow-Origin") == ["https://own.example.org"]
    ours_only = {"Cache-Control", "X-Content-Type-Options", "Vary"}  # web/headers.py's, on every answer
    assert sorted(h for h in got.headers.items() if h[0] not in ours_only) == sorted(want.headers.items())


@pytest.mark.parametrize("origins", [["*"], ["https://ehr.example.org"]])
def test_every_answer_is_no_store_nosniff_and_varies_by_origin(make_config: Callable[..., Path],
                                                               origins: list[str]) -> None:
    """Cards and feedback carry patient data: no cache keeps them; and CORS answers differ by Origin, so every
    answer says so, the ones to a request without Origin too."""
    app = create_app(str(make_config(cors={"origins": origins})))
    client = app.test_client()
    body = load_scenario("01")["request"]
    call = "/cds-services/injection-billing-encounter-discharge"
    try:
        answers = [
            client.post(call, json=body),
            client.post(call, json=body, headers={"Origin": "https://evil.example.com"}),
            client.get("/cds-services", headers={"Origin": "https://ehr.example.org"}),
            client.get("/healthz"),
            client.get("/metrics"),
            client.get("/nowhere"),
            client.post(call, data="{", content_type="application/json"),
            client.options(call, headers={"Origin": "https://ehr.example.org",
                                          "Access-Control-Request-Method": "POST"}),
        ]
        for answer in answers:
            assert answer.headers["Cache-Control"] == "no-store"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert [v.strip() for v in answer.headers["Vary"].split(",")].count("Origin") == 1
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 404, 400, 200]
    finally:
        app.extensions["cds"].store.dispose()
