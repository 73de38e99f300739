"""Every official FHIR R4 example and every Synthea resource, each wrapped in a hook call: never a 500.

Encounters go to prefetch `encounter`, MedicationAdministrations to `administrations`, Conditions to
`conditions` (all at encounter-discharge), MedicationRequests to order-sign's draftOrders; every other
prefetch key is null, so nothing is fetched. The data are copies in tests/fixtures/reference.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from tests.cardshape import check_shape
from tests.conftest import DEFAULT_CONFIG, FIXTURES, load_scenario, suggested_charges

REFERENCE = FIXTURES / "reference"
DISCHARGE = "injection-billing-encounter-discharge"
ORDER_SIGN = "injection-billing-order-sign"
ENCOUNTER_KEYS = ("encounter", "administrations", "conditions", "charges", "coverage")
ORDER_SIGN_KEYS = ("encounter", "administrations", "conditions", "coverage")
PREFETCH_KEY = {"Encounter": "encounter", "MedicationAdministration": "administrations", "Condition": "conditions"}


def reference_resources() -> list[Any]:
    """(id, resource) for every example file and every NDJSON line."""
    out = []
    for path in sorted((REFERENCE / "fhir-r4-examples").glob("*.json")):
        out.append(pytest.param(json.loads(path.read_text()), id=f"r4/{path.stem}"))
    for path in sorted((REFERENCE / "synthea").glob("*.ndjson")):
        for n, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                out.append(pytest.param(json.loads(line), id=f"synthea/{path.stem}:{n}"))
    return out


RESOURCES = reference_resources()


def test_the_reference_data_are_all_here() -> None:
    types: dict[str, int] = {}
    for param in RESOURCES:
        rtype = param.values[0]["resourceType"]
        types[rtype] = types.get(rtype, 0) + 1
    assert types == {"Condition": 59, "Encounter": 43, "MedicationAdministration": 14, "MedicationRequest": 13}


def id_of(reference: Any, rtype: str) -> str | None:
    """'Patient/123' or 'http://x/fhir/Patient/123' -> '123'."""
    text = (reference.get("reference") or "") if isinstance(reference, dict) else ""
    parts = text.split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == rtype and parts[-1] else None


def hook_call(resource: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The service and the request that carry this resource, with the context it points at."""
    rtype = resource["resourceType"]
    patient = id_of(resource.get("subject") or resource.get("patient"), "Patient") or "example-patient"
    if rtype == "Encounter":
        encounter = resource["id"]
    else:
        encounter = id_of(resource.get("context") or resource.get("encounter"), "Encounter") or "example-encounter"
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": patient, "encounterId": encounter}
    if rtype == "MedicationRequest":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
        service, hook, prefetch = ORDER_SIGN, "order-sign", dict.fromkeys(ORDER_SIGN_KEYS)
    else:
        service, hook, prefetch = DISCHARGE, "encounter-discharge", dict.fromkeys(ENCOUNTER_KEYS)
        key = PREFETCH_KEY[rtype]
        prefetch[key] = resource if key == "encounter" else {
            "resourceType": "Bundle", "type": "searchset", "total": 1,
            "entry": [{"fullUrl": f"http://example.org/fhir/{rtype}/{resource.get('id')}", "resource": resource,
                       "search": {"mode": "match"}}],
        }
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
    return service, body


@pytest.fixture(scope="module")
def module_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One app for the whole module: a few hundred calls, no need for a fresh store each."""
    tmp = tmp_path_factory.mktemp("reference")
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["store"]["url"] = f"sqlite:///{tmp}/cds.db"
    path = Path(tmp) / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    application = create_app(str(path))
    yield application
    application.extensions["cds"].store.dispose()


@pytest.fixture
def ref_client(module_app: Flask) -> FlaskClient:
    return module_app.test_client()


def post(client: FlaskClient, service: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.mimetype == "application/json"
    assert "Traceback" not in response.get_data(as_text=True)
    payload: dict[str, Any] = response.get_json()
    return response.status_code, payload


def topic_codes(payload: dict[str, Any]) -> list[str]:
    return [card["source"]["topic"]["code"] for card in payload["cards"]]


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_reference_resource_gets_well_formed_cards(ref_client: FlaskClient, resource: dict[str, Any]) -> None:
    service, body = hook_call(resource)
    status, payload = post(ref_client, service, body)
    assert status == 200, payload
    hook_kind = "order-sign" if service == ORDER_SIGN else "encounter"
    assert check_shape(payload, hook_kind, ()) == []
    # They are official, valid R4: none may be reported as unreadable.
    assert "invalid-resource" not in topic_codes(payload)


@pytest.mark.parametrize("resource", RESOURCES)
def test_a_broken_copy_gets_an_invalid_resource_card(ref_client: FlaskClient, resource: dict[str, Any]) -> None:
    """R4 has no element `notAnR4Element`: the resource is set aside, named on a card, and the call still answers."""
    broken = copy.deepcopy(resource)
    broken["notAnR4Element"] = True
    service, body = hook_call(broken)
    status, payload = post(ref_client, service, body)
    assert status == 200, payload
    assert check_shape(payload, "order-sign" if service == ORDER_SIGN else "encounter", ()) == []
    invalid = [card for card in payload["cards"] if card["source"]["topic"]["code"] == "invalid-resource"]
    assert len(invalid) == 1
    assert f"{resource['resourceType']}/{resource['id']}" in invalid[0]["summary"]
    assert invalid[0]["indicator"] == "warning"
    assert "notAnR4Element" in invalid[0]["detail"]


def test_the_synthea_patient_at_once(ref_client: FlaskClient) -> None:
    """The B12 patient's Conditions and injectable orders in one order-sign call, with one of their Encounters."""
    synthea = REFERENCE / "synthea"

    def lines(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (synthea / name).read_text().splitlines() if line.strip()]

    orders = lines("MedicationRequest.b12.ndjson") + lines("MedicationRequest.injectables.ndjson")
    conditions = lines("Condition.b12-patient.ndjson")
    encounter = lines("Encounter.b12-patient.ndjson")[-1]
    service, body = hook_call(orders[0])
    body["context"]["draftOrders"]["entry"] = [{"resource": order} for order in orders]
    body["context"]["encounterId"] = encounter["id"]
    body["prefetch"]["encounter"] = encounter
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset",
                                      "entry": [{"resource": c} for c in conditions]}
    status, payload = post(ref_client, service, body)
    assert status == 200, payload
    assert check_shape(payload, "order-sign", ()) == []
    assert "invalid-resource" not in topic_codes(payload)


def test_a_repeated_bundle_entry_is_one_administration(ref_client: FlaskClient) -> None:
    """A paged search may return the same entry twice; it is still one injection, billed once."""
    once = copy.deepcopy(load_scenario("01")["request"])
    twice = copy.deepcopy(once)
    entries = twice["prefetch"]["administrations"]["entry"]
    entries.append(copy.deepcopy(entries[0]))
    _, expected = post(ref_client, DISCHARGE, once)
    status, payload = post(ref_client, DISCHARGE, twice)
    assert status == 200
    assert topic_codes(payload) == topic_codes(expected) == ["admin-96372", "drug-waste-modifier"]
    assert sorted(suggested_charges(payload)) == sorted(suggested_charges(expected))
