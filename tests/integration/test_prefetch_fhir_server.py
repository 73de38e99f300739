"""Prefetch against a real FHIR server (sekmet-fhir): the service fetches what the EHR did not send."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import requests
from flask.testing import FlaskClient

from cds_service.fhir.client import FhirClient
from tests.conftest import load_scenario, suggested_charges, topics

if TYPE_CHECKING:
    from .conftest import FhirServer

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
AUTH = {"access_token": "tok-123", "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read", "subject": "cds"}
SCENARIO_ID = "4f2b4345"  # the id part of every resource of scenario 01
PRIOR_ADMINS = 25  # more than sekmet's default page size of 20


@dataclass(frozen=True)
class Loaded:
    """Scenario 01 loaded into sekmet under fresh ids."""

    base: str
    patient_id: str
    encounter_id: str
    medication_id: str
    request: dict[str, Any]  # the hook request without prefetch
    prefetch: dict[str, Any]  # scenario 01's prefetch under the fresh ids (current admin by reference)

    def hook_request(self, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
        body = copy.deepcopy(self.request)
        if prefetch is not None:
            body["prefetch"] = copy.deepcopy(prefetch)
        return body


def resources_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle.get("entry") or []]


@pytest.fixture(scope="module")
def loaded(sekmet: FhirServer) -> Loaded:
    suffix = uuid.uuid4().hex[:10]
    request = json.loads(json.dumps(load_scenario("01")["request"]).replace(SCENARIO_ID, suffix))
    prefetch = request.pop("prefetch")
    patient_id = request["context"]["patientId"]
    encounter_id = request["context"]["encounterId"]
    medication_id = f"med-{suffix}"

    current = next(ma for ma in resources_of(prefetch["administrations"])
                   if ma["context"]["reference"] == f"Encounter/{encounter_id}")
    concept = current.pop("medicationCodeableConcept")
    current["medicationReference"] = {"reference": f"Medication/{medication_id}"}
    medication = {"resourceType": "Medication", "id": medication_id, "status": "active", "code": concept}

    sekmet.put({"resourceType": "Patient", "id": patient_id})
    sekmet.put(prefetch["encounter"])
    for key in ("administrations", "conditions", "charges", "coverage"):
        for resource in resources_of(prefetch[key]):
            sekmet.put(resource)
    sekmet.put(medication)  # on the server, but in no Bundle the service receives

    request["fhirServer"] = sekmet.base
    request["fhirAuthorization"] = dict(AUTH)
    return Loaded(sekmet.base, patient_id, encounter_id, medication_id, request, prefetch)


@pytest.fixture
def discharge_client(make_client: Callable[..., FlaskClient], loaded: Loaded) -> FlaskClient:
    return make_client(fhir={"allowed_servers": [loaded.base]})


def assert_happy_01(response: Any) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert "admin-96372" in topics(body)
    charges = sorted((code, units) for code, units, _mods in suggested_charges(body))
    assert charges == [("96372", 1), ("J3420", 1)]


def test_server_holds_the_scenario_and_the_medication_is_only_referenced(sekmet: FhirServer, loaded: Loaded) -> None:
    """Sanity checks of the data the other tests rely on."""
    admins = sekmet.get(f"MedicationAdministration?patient={loaded.patient_id}")
    assert admins.status_code == 200
    bundle = admins.json()
    assert bundle["resourceType"] == "Bundle"
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"MedicationAdministration"}
    assert len(bundle["entry"]) == 4
    current = [e["resource"] for e in bundle["entry"]
               if e["resource"]["context"]["reference"] == f"Encounter/{loaded.encounter_id}"]
    assert len(current) == 1
    assert current[0]["medicationReference"] == {"reference": f"Medication/{loaded.medication_id}"}
    assert "medicationCodeableConcept" not in current[0]
    assert sekmet.get(f"Medication/{loaded.medication_id}").status_code == 200


def test_no_prefetch_fetches_everything_from_the_fhir_server(
    discharge_client: FlaskClient, loaded: Loaded
) -> None:
    request = loaded.hook_request()
    assert "prefetch" not in request
    response = discharge_client.post(DISCHARGE, json=request)
    # J3420 can come only from the Medication the service read from the server itself.
    assert_happy_01(response)
    card = next(c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == "admin-96372")
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    assert {a["resource"]["context"]["reference"] for a in actions} == {f"Encounter/{loaded.encounter_id}"}
    assert {a["resource"]["subject"]["reference"] for a in actions} == {f"Patient/{loaded.patient_id}"}


def test_partial_prefetch_fetches_the_rest_and_gives_the_same_cards(
    discharge_client: FlaskClient, loaded: Loaded
) -> None:
    no_prefetch = discharge_client.post(DISCHARGE, json=loaded.hook_request())
    partial = discharge_client.post(DISCHARGE, json=loaded.hook_request({"encounter": loaded.prefetch["encounter"]}))
    assert_happy_01(partial)
    assert_happy_01(no_prefetch)
    assert topics(partial.get_json()) == topics(no_prefetch.get_json())
    assert suggested_charges(partial.get_json()) == suggested_charges(no_prefetch.get_json())


def test_full_prefetch_with_medication_reference_reads_the_medication(
    discharge_client: FlaskClient, loaded: Loaded
) -> None:
    """Every key sent: only the referenced Medication (in no Bundle) is read from the server."""
    response = discharge_client.post(DISCHARGE, json=loaded.hook_request(loaded.prefetch))
    assert_happy_01(response)


# --- paging: FhirClient.search follows `next` links up to max_pages -----------------------------

@pytest.fixture(scope="module")
def many_admins_patient(sekmet: FhirServer, loaded: Loaded) -> tuple[str, set[str]]:
    """A separate patient (so the card tests above are unaffected) with 25 prior administrations."""
    patient_id = f"{loaded.patient_id}-many"
    template = next(ma for ma in resources_of(loaded.prefetch["administrations"])
                    if ma["context"]["reference"] != f"Encounter/{loaded.encounter_id}")
    sekmet.put({"resourceType": "Patient", "id": patient_id})
    ids = set()
    for i in range(PRIOR_ADMINS):
        admin = copy.deepcopy(template)
        admin["id"] = f"{patient_id}-ma-{i:02d}"
        admin["subject"] = {"reference": f"Patient/{patient_id}"}
        admin["context"] = {"reference": f"Encounter/{patient_id}-enc-{i:02d}"}
        admin["effectiveDateTime"] = f"2023-{1 + i % 12:02d}-{1 + i:02d}T10:15:00-05:00"
        sekmet.put(admin)
        ids.add(admin["id"])
    return patient_id, ids


@pytest.mark.parametrize(("max_pages", "expected"), [(5, PRIOR_ADMINS), (2, PRIOR_ADMINS), (1, 20)])
def test_search_follows_next_links_up_to_max_pages(
    loaded: Loaded, many_admins_patient: tuple[str, set[str]], max_pages: int, expected: int
) -> None:
    patient_id, ids = many_admins_patient
    with requests.Session() as session:
        client = FhirClient(loaded.base, "tok-123", deadline=time.monotonic() + 20,
                            max_bytes=10 * 1024 * 1024, session=session)
        bundle = client.search(f"MedicationAdministration?patient={patient_id}", max_pages=max_pages)
    assert bundle["resourceType"] == "Bundle"
    assert "link" not in bundle  # the merged Bundle has no paging links left
    got = [e["resource"]["id"] for e in bundle["entry"]]
    assert len(got) == expected
    assert len(set(got)) == expected
    assert set(got) <= ids


def test_first_page_really_is_a_page(sekmet: FhirServer, many_admins_patient: tuple[str, set[str]]) -> None:
    """Sanity: sekmet pages at 20 with a `next` link, so max_pages=1 above really cut the search."""
    patient_id, _ = many_admins_patient
    bundle = sekmet.get(f"MedicationAdministration?patient={patient_id}").json()
    assert len(bundle["entry"]) == 20
    assert any(link["relation"] == "next" for link in bundle["link"])


# --- an encounter the server does not know ------------------------------------------------------

def test_unknown_encounter_is_evaluated_without_it(
    sekmet: FhirServer, discharge_client: FlaskClient, loaded: Loaded
) -> None:
    """Encounter read 404 -> the `encounter` key is 'no data' (no 412); the patient's administrations
    all belong to other encounters, so no card."""
    missing = f"{loaded.encounter_id}-missing"
    assert sekmet.get(f"Encounter/{missing}").status_code == 404
    request = loaded.hook_request()
    request["context"]["encounterId"] = missing
    response = discharge_client.post(DISCHARGE, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"cards": []}


def test_unknown_encounter_with_its_administration_still_bills_it(
    sekmet: FhirServer, discharge_client: FlaskClient, loaded: Loaded
) -> None:
    """Encounter read 404, but an administration points at that encounter: it is billed without the
    Encounter (date of service from the administration)."""
    patient_id = f"{loaded.patient_id}-noenc"
    missing = f"{loaded.encounter_id}-noenc"
    admin = copy.deepcopy(next(ma for ma in resources_of(loaded.prefetch["administrations"])
                               if ma["context"]["reference"] == f"Encounter/{loaded.encounter_id}"))
    admin["id"] = f"{patient_id}-ma"
    admin["subject"] = {"reference": f"Patient/{patient_id}"}
    admin["context"] = {"reference": f"Encounter/{missing}"}
    sekmet.put({"resourceType": "Patient", "id": patient_id})
    sekmet.put(admin)
    assert sekmet.get(f"Encounter/{missing}").status_code == 404

    request = loaded.hook_request()
    request["context"]["patientId"] = patient_id
    request["context"]["encounterId"] = missing
    response = discharge_client.post(DISCHARGE, json=request)
    assert_happy_01(response)
    body = response.get_json()
    assert topics(body) == ["admin-96372", "diagnosis-missing"]  # its Condition and Coverage are not this patient's
    actions = [a for c in body["cards"] for s in c.get("suggestions", []) for a in s["actions"]]
    assert {a["resource"]["context"]["reference"] for a in actions} == {f"Encounter/{missing}"}
    assert {a["resource"]["occurrenceDateTime"] for a in actions} == {"2025-03-04"}
    assert {a["resource"]["service"][0]["reference"] for a in actions} == {f"MedicationAdministration/{admin['id']}"}
