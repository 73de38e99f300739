"""Per-call configuration options: advertised in discovery, chosen in the request's extension."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.protocol import OPTIONS_EXTENSION, REQUEST_OPTIONS_EXTENSION
from cds_service.rules import GROUPS
from tests.cardshape import check_shape, empty_paths
from tests.conftest import load_scenario, topics

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
ORDER_SIGN = "/cds-services/injection-billing-order-sign"
GROUP_CODES = ("billing", "documentation", "coverage", "charges", "data-quality")
SEVERITY = {"critical": 0, "warning": 1, "info": 2}


def request_01(options: dict[str, Any] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(load_scenario("01")["request"])
    if options is not None:
        body["extension"] = {REQUEST_OPTIONS_EXTENSION: options}
    return body


def busy_request_01(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Scenario 01 plus a captured 96372 resting on no administration (critical) and a free-text route (warning)."""
    body = request_01(options)
    admin = body["prefetch"]["administrations"]["entry"][0]["resource"]
    admin["dosage"].pop("route", None)
    admin["dosage"]["text"] = "1,000 mcg IM"
    body["prefetch"]["charges"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "ChargeItem", "id": "ci-orphan", "status": "billable",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "96372"}]},
        "subject": {"reference": f"Patient/{body['context']['patientId']}"},
        "context": {"reference": f"Encounter/{body['context']['encounterId']}"},
        "occurrenceDateTime": "2025-03-04",
        "service": [{"reference": "MedicationAdministration/not-given"}],
    }}]}
    return body


def call(client: FlaskClient, body: dict[str, Any], url: str = DISCHARGE) -> tuple[int, dict[str, Any]]:
    response = client.post(url, json=body)
    assert response.mimetype == "application/json"
    payload: dict[str, Any] = response.get_json()
    return response.status_code, payload


# --- discovery ---------------------------------------------------------------------------------------------

def test_every_service_advertises_the_options(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.get_json()["services"]
    assert {s["id"] for s in services} == {
        "injection-billing-order-sign", "injection-billing-encounter-discharge", "injection-billing-encounter-close"}
    for service in services:
        options = service["extension"][OPTIONS_EXTENSION]
        by_code = {option["code"]: option for option in options}
        assert list(by_code) == [*GROUP_CODES, "max-cards"]
        for code in GROUP_CODES:
            assert by_code[code]["type"] == "boolean"
            assert by_code[code]["default"] is True
        assert by_code["max-cards"]["type"] == "integer"
        assert by_code["max-cards"]["default"] == 20  # hooks.max_cards of config/default.yaml
        for option in options:
            assert option["name"] and option["description"]
        assert list(empty_paths(service)) == []


def test_the_advertised_groups_are_the_rule_groups() -> None:
    assert set(GROUPS) == set(GROUP_CODES)


def test_max_cards_default_comes_from_configuration(make_config: Callable[..., Path]) -> None:
    app = create_app(str(make_config(hooks={"max_cards": 2})))
    try:
        test_client = app.test_client()
        for service in test_client.get("/cds-services").get_json()["services"]:
            options = {o["code"]: o for o in service["extension"][OPTIONS_EXTENSION]}
            assert options["max-cards"]["default"] == 2
        status, payload = call(test_client, busy_request_01())
        assert status == 200
        assert topics(payload) == ["drug-waste-modifier", "charge-unsupported"]
        status, payload = call(test_client, busy_request_01({"max-cards": 3}))  # a call may ask for more
        assert status == 200
        assert topics(payload) == ["drug-waste-modifier", "route-uncoded", "charge-unsupported"]
    finally:
        app.extensions["cds"].store.dispose()


# --- rule groups ----------------------------------------------------------------------------------------

def test_billing_false_drops_the_96372_card(client: FlaskClient) -> None:
    status, everything = call(client, request_01())
    assert status == 200 and "admin-96372" in topics(everything)
    status, payload = call(client, request_01({"billing": False}))
    assert status == 200
    assert "admin-96372" not in topics(payload)
    assert not set(topics(payload)) & GROUPS["billing"]
    assert check_shape(payload, "encounter", ()) == []


@pytest.mark.parametrize("group", GROUP_CODES)
def test_a_group_switched_off_loses_its_cards_and_only_those(client: FlaskClient, group: str) -> None:
    status, everything = call(client, busy_request_01())
    assert status == 200
    status, payload = call(client, busy_request_01({group: False}))
    assert status == 200
    assert topics(payload) == [code for code in topics(everything) if code not in GROUPS[group]]
    assert check_shape(payload, "encounter", {"ci-orphan"}) == []


def test_every_option_true_is_the_default(client: FlaskClient) -> None:
    _, everything = call(client, busy_request_01())
    status, payload = call(client, busy_request_01({**dict.fromkeys(GROUP_CODES, True), "max-cards": 20}))
    assert status == 200
    assert [c["uuid"] for c in payload["cards"]] == [c["uuid"] for c in everything["cards"]]


def test_options_work_at_order_sign(client: FlaskClient) -> None:
    body = copy.deepcopy(load_scenario("02")["request"])
    status, everything = call(client, body, ORDER_SIGN)
    assert status == 200 and "admin-96372" in topics(everything)
    body["extension"] = {REQUEST_OPTIONS_EXTENSION: {"billing": False}}
    status, payload = call(client, body, ORDER_SIGN)
    assert status == 200 and "admin-96372" not in topics(payload)


def test_other_extensions_are_ignored(client: FlaskClient) -> None:
    _, everything = call(client, request_01())
    body = request_01()
    body["extension"] = {"com.example.something-else": {"billing": "no"}}
    status, payload = call(client, body)
    assert status == 200
    assert topics(payload) == topics(everything)


# --- max-cards -------------------------------------------------------------------------------------------

def test_max_cards_1_keeps_the_most_severe_card(client: FlaskClient) -> None:
    status, everything = call(client, request_01())
    assert status == 200
    assert [c["indicator"] for c in everything["cards"]] == ["info", "warning"]  # the severe one is not first
    status, payload = call(client, request_01({"max-cards": 1}))
    assert status == 200
    assert len(payload["cards"]) == 1
    [card] = payload["cards"]
    assert card["source"]["topic"]["code"] == "drug-waste-modifier"
    assert card == everything["cards"][1]


def test_max_cards_keeps_the_most_severe_in_their_order(client: FlaskClient) -> None:
    status, everything = call(client, busy_request_01())
    assert status == 200
    cards = everything["cards"]
    assert {c["indicator"] for c in cards} == {"critical", "warning", "info"}
    for n in range(1, len(cards) + 2):
        status, payload = call(client, busy_request_01({"max-cards": n}))
        assert status == 200
        kept = sorted(range(len(cards)), key=lambda i: (SEVERITY[cards[i]["indicator"]], i))[:n]
        assert payload["cards"] == [cards[i] for i in sorted(kept)]


def test_max_cards_0_returns_no_cards(client: FlaskClient) -> None:
    response = client.post(DISCHARGE, json=request_01({"max-cards": 0}))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


# --- bad options -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {"bogus": True},
    {"Billing": False},
    {"billing": "false"},
    {"billing": 0},
    {"billing": None},
    {"data-quality": "yes"},
    {"max-cards": "1"},
    {"max-cards": True},
    {"max-cards": 1.5},
    {"max-cards": -1},
    {"max-cards": None},
    ["billing"],
    "billing=false",
], ids=repr)
def test_an_unknown_option_or_a_wrong_type_is_a_400(client: FlaskClient, options: Any) -> None:
    body = request_01()
    body["extension"] = {REQUEST_OPTIONS_EXTENSION: options}
    status, payload = call(client, body)
    assert status == 400, payload
    assert payload["resourceType"] == "OperationOutcome"
    assert payload["issue"][0]["severity"] == "error"
    assert payload["issue"][0]["code"] == "invalid"
    assert REQUEST_OPTIONS_EXTENSION in payload["issue"][0]["diagnostics"]
