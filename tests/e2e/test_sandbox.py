"""The CDS Hooks sandbox's own requests against a real `cds-service serve` (issue 20).

tests/fixtures/sandbox-rx-sign-2026-12.json is the body of a real Rx Sign call of cds-hooks/sandbox built from
source: `category` as one object, no `type` on the draft Bundle, no route, dose `{pill}`, no encounterId. Its
medication picker offers oral forms; one of its RxNorm entries names an ingredient and strength only ("Vitamin
B 12 2.5 MG", 332418), which is what a developer picks (README: Try it with the CDS Hooks sandbox) to see the
billing cards. "Treating" puts the chosen Condition's code in reasonCode as one object, as the sandbox does."""

from __future__ import annotations

import copy
import json
from typing import Any

import requests

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server

ORDER_SIGN = "/cds-services/injection-billing-order-sign"
RECORDED = json.loads((FIXTURES / "sandbox-rx-sign-2026-12.json").read_text())
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def cards_of(server: Server, http: requests.Session, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = http.post(server.url(ORDER_SIGN), json=body, timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    cards: list[dict[str, Any]] = answer.json()["cards"]
    return cards


def test_the_sandboxs_oral_tablet_order_gets_only_the_list_of_what_its_request_should_fix(
        server: Server, http: requests.Session) -> None:
    """Vitamin B 12 1 MG Oral Tablet, no route: not an injection, so no billing card; the resource is read (not
    thrown out for its category) and one info card lists the near-misses of R4."""
    (card,) = cards_of(server, http, RECORDED)
    assert (card["source"]["topic"]["code"], card["indicator"]) == ("invalid-resource", "info")
    assert card["summary"] == "2 resources read after repairing near-misses of FHIR R4; the EHR should send valid R4"
    detail = " ".join(card["detail"].split())
    assert ("**MedicationRequest/request-123** (from `context.draftOrders`): category: one value where FHIR R4 "
            "wants a list; read as a list of one") in detail
    assert "**Bundle/(no id)** (from `context.draftOrders`): type: missing; read as a collection of its entries" \
        in detail


def test_the_documented_sandbox_path_ends_in_billing_cards(server: Server, http: requests.Session) -> None:
    """RxNorm 332418 "Vitamin B 12 2.5 MG" (no dose form) treating the patient's pernicious anemia: the order is
    cyanocobalamin, and the cards say what it would bill charted IM and what is missing for the drug line."""
    body = copy.deepcopy(RECORDED)
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    name = "Vitamin B 12 2.5 MG"
    order["medicationCodeableConcept"] = {"text": name, "coding": [{"display": name, "system": RXNORM,
                                                                     "code": "332418"}]}
    condition = body["prefetch"]["conditions"]["entry"][0]["resource"]
    order["reasonCode"] = condition["code"]  # the sandbox's Treating: one CodeableConcept where R4 wants a list
    cards = cards_of(server, http, body)
    assert [(c["source"]["topic"]["code"], c["indicator"]) for c in cards] == [
        ("route-missing", "warning"), ("dose-missing", "warning"), ("invalid-resource", "info")]
    route, dose, repairs = cards
    assert route["summary"] == ("No route documented for Cyanocobalamin (vitamin B12) (J3420): 96372 needs SC or IM "
                                "charted")
    assert ("Charted IM, this order would bill **96372 x1**, and J3420 once the dose is charted in a unit it counts "
            "(one unit per 1,000 mcg).") in " ".join(route["detail"].split())
    assert dose["summary"] == "No billable dose for Cyanocobalamin (vitamin B12): J3420 units cannot be computed"
    assert "reasonCode: one value where FHIR R4 wants a list; read as a list of one" in repairs["detail"]
