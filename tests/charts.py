"""Realistic CDS Hooks requests built from a few facts: one office visit, its administrations, charges and
coverage, shaped like tests/fixtures/01-happy-im-medicare.json (itself shaped like an EHR's prefetch)."""

from __future__ import annotations

import uuid
from typing import Any

FHIR = "http://127.0.0.1:9/fhir"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
CVX = "http://hl7.org/fhir/sid/cvx"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
SNOMED = "http://snomed.info/sct"
ROUTES = {
    "IM": ("78421000", "Intramuscular route"),
    "SC": ("34206005", "Subcutaneous route"),
    "IV": ("47625008", "Intravenous route"),
    "intra-articular": ("12130007", "Intra-articular route"),
    "intradermal": ("372464004", "Intradermal route"),
    "oral": ("26643006", "Oral route"),
}
PAYERS = {"medicare": ("121", "Medicare FFS"), "commercial": ("5", "Private health insurance")}


def medication(*codings: tuple[str, str], text: str | None = None) -> dict[str, Any]:
    """A medicationCodeableConcept from (system, code) pairs."""
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code} for system, code in codings]}
    if text:
        concept["text"] = text
    if not codings:
        del concept["coding"]
    return concept


def administration(
    n: int,
    concept: dict[str, Any],
    *,
    at: str,
    dose: tuple[float, str] | None = None,
    route: str | None = "IM",
    end: str | None = None,
    status: str = "completed",
    encounter: str = "enc-1",
    reason: str = "cond-1",
) -> dict[str, Any]:
    ma: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": f"ma-{n}",
        "status": status,
        "medicationCodeableConcept": concept,
        "subject": {"reference": "Patient/pt-1"},
        "context": {"reference": f"Encounter/{encounter}"},
        "performer": [{"actor": {"reference": "Practitioner/rn-1", "display": "Dana Whitfield, RN"}}],
        "reasonReference": [{"reference": f"Condition/{reason}"}],
        "dosage": {},
    }
    if end is None:
        ma["effectiveDateTime"] = at
    else:
        ma["effectivePeriod"] = {"start": at, "end": end}
    if route is not None:
        code, display = ROUTES[route]
        ma["dosage"]["route"] = {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display}
    if dose is not None:
        ma["dosage"]["dose"] = {"value": dose[0], "unit": dose[1], "system": "http://unitsofmeasure.org",
                                "code": dose[1]}
    if not ma["dosage"]:
        del ma["dosage"]
    return ma


def charge(charge_id: str, code: str, *, units: float = 1, day: str, admin: int | None = 1,
           system: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "resourceType": "ChargeItem",
        "id": charge_id,
        "status": "billable",
        "code": {"coding": [{"system": system or (HCPCS if code[0].isalpha() else CPT), "code": code}]},
        "subject": {"reference": "Patient/pt-1"},
        "context": {"reference": "Encounter/enc-1"},
        "occurrenceDateTime": day,
        "quantity": {"value": units},
    }
    if admin is not None:
        item["service"] = [{"reference": f"MedicationAdministration/ma-{admin}"}]
    return item


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{FHIR}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def encounter(day: str, *, start: str = "T10:00:00", offset: str = "-05:00", pos: str = "11") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/pt-1"},
        "period": {"start": f"{day}{start}{offset}", "end": f"{day}T11:00:00{offset}"},
        "contained": [{"resourceType": "Location", "id": "loc1", "type": [{"coding": [{
            "system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set",
            "code": pos}]}]}],
        "location": [{"location": {"reference": "#loc1"}}],
    }


def discharge(
    day: str,
    administrations: list[dict[str, Any]],
    *,
    charges: list[dict[str, Any]] | None = None,
    payer: str = "medicare",
    diagnosis: str = "D51.0",
    offset: str = "-05:00",
) -> dict[str, Any]:
    """An encounter-discharge call for an office visit on `day` (the encounter's local date)."""
    code, display = PAYERS[payer]
    condition = {
        "resourceType": "Condition", "id": "cond-1", "subject": {"reference": "Patient/pt-1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "encounter-diagnosis"}]}],
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": diagnosis}]},
    }
    coverage = {"resourceType": "Coverage", "id": "cov-1", "status": "active",
                "type": {"coding": [{"system": "urn:oid:2.16.840.1.113883.3.221.5", "code": code,
                                     "display": display}]},
                "beneficiary": {"reference": "Patient/pt-1"}, "payor": [{"display": display}]}
    return {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": FHIR,
        "context": {"userId": "Practitioner/md-1", "patientId": "pt-1", "encounterId": "enc-1"},
        "prefetch": {
            "encounter": encounter(day, offset=offset),
            "administrations": bundle(administrations),
            "conditions": bundle([condition]),
            "charges": bundle(charges or []),
            "coverage": bundle([coverage]),
        },
    }


def answer_charges(answer: dict[str, Any]) -> list[tuple[str, str, float, tuple[str, ...]]]:
    """(rule, code, units, modifiers) of every ChargeItem a card creates or updates."""
    out = []
    for card in answer["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                resource = action.get("resource") or {}
                if action["type"] in ("create", "update") and resource.get("resourceType") == "ChargeItem":
                    modifiers = tuple(e["valueCoding"]["code"] for e in resource.get("extension", [])
                                      if e["url"].endswith("/procedure-modifier"))
                    out.append((card["source"]["topic"]["code"], resource["code"]["coding"][0]["code"],
                                resource["quantity"]["value"], modifiers))
    return out


def rules_of(answer: dict[str, Any]) -> set[str]:
    return {card["source"]["topic"]["code"] for card in answer["cards"]}
