"""Benchmark requests: the typical encounter-discharge call, long histories, and many distinct copies.

Built from tests/fixtures/01-happy-im-medicare.json. The typical request holds 1 Encounter, 3
MedicationAdministrations (this visit's and two prior months'), 4 Conditions, 1 captured ChargeItem and
1 Coverage. A history of N holds this visit's administration and N-1 prior ones of other encounters, 30
days apart, with the same Conditions, ChargeItem and Coverage.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "01-happy-im-medicare.json"
SERVICE_ID = "injection-billing-encounter-discharge"
TAG = "4f2b4345"  # the fixture's id suffix: every patient, encounter and resource id carries it
BASE = "http://127.0.0.1:9/fhir"

EXTRA_CONDITIONS = [  # (code, display, category): three more, beside the fixture's D51.0
    ("I10", "Essential (primary) hypertension", "problem-list-item"),
    ("E11.9", "Type 2 diabetes mellitus without complications", "problem-list-item"),
    ("K90.0", "Celiac disease", "encounter-diagnosis"),
]


def fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))["request"]
    return data


def prior_admin(template: dict[str, Any], k: int, when: dt.datetime) -> dict[str, Any]:
    """The k-th prior administration (k >= 1), given on another encounter `when`."""
    res = copy.deepcopy(template)
    res["id"] = f"ma-{TAG}-h{k}"
    res["context"] = {"reference": f"Encounter/enc-{TAG}-h{k}"}
    res["effectiveDateTime"] = when.isoformat()
    return {"fullUrl": f"{BASE}/MedicationAdministration/{res['id']}", "resource": res, "search": {"mode": "match"}}


def condition(template: dict[str, Any], n: int, code: str, display: str, category: str) -> dict[str, Any]:
    res = copy.deepcopy(template)
    res["id"] = f"cond-{TAG}-{n}"
    res["code"] = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display}],
                   "text": display}
    res["category"][0]["coding"][0].update(
        code=category, display="Problem List Item" if category == "problem-list-item" else "Encounter Diagnosis"
    )
    if category == "problem-list-item":
        res.pop("encounter", None)
        res["recordedDate"] = "2023-06-12T09:30:00-04:00"
    return {"fullUrl": f"{BASE}/Condition/{res['id']}", "resource": res, "search": {"mode": "match"}}


def charge_item() -> dict[str, Any]:
    """The drug's charge, already captured by the clinic (J3420 x1 for this visit's administration)."""
    res = {
        "resourceType": "ChargeItem",
        "id": f"ci-{TAG}-1",
        "status": "billable",
        "code": {"coding": [{"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "J3420",
                             "display": "Injection, vitamin B-12 cyanocobalamin, up to 1,000 mcg"}]},
        "subject": {"reference": f"Patient/pt-{TAG}"},
        "context": {"reference": f"Encounter/enc-{TAG}"},
        "occurrenceDateTime": "2025-03-04",
        "performer": [{"actor": {"reference": "Practitioner/prac-rn-0117", "display": "Dana Whitfield, RN"}}],
        "quantity": {"value": 1},
        "enteredDate": "2025-03-04T10:40:00-05:00",
        "reason": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "D51.0",
                                "display": "Vitamin B12 deficiency anemia due to intrinsic factor deficiency"}]}],
        "service": [{"reference": f"MedicationAdministration/ma-{TAG}-1"}],
    }
    return {"fullUrl": f"{BASE}/ChargeItem/{res['id']}", "resource": res, "search": {"mode": "match"}}


PROFILES = {  # US Core / R4 profiles an EHR's FHIR server stamps on what it returns
    "Encounter": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter",
    "MedicationAdministration": "http://hl7.org/fhir/StructureDefinition/MedicationAdministration",
    "Condition": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-encounter-diagnosis",
    "ChargeItem": "http://hl7.org/fhir/StructureDefinition/ChargeItem",
    "Coverage": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-coverage",
}


def narrative(res: dict[str, Any]) -> str:
    """A short generated narrative, as an EHR's FHIR server returns it."""
    rtype = res["resourceType"]
    if rtype == "MedicationAdministration":
        what = f"{res['medicationCodeableConcept']['text']}, given {res['effectiveDateTime']}"
    elif rtype == "Condition":
        what = f"{res['code']['coding'][0]['code']}: {res['code']['text']}"
    elif rtype == "Encounter":
        what = f"{res['type'][0]['text']}, {res['period']['start']} to {res['period']['end']}"
    elif rtype == "Coverage":
        what = f"{res['payor'][0]['display']}, {res['class'][0]['name']}"
    else:
        what = res["code"]["coding"][0]["display"]
    return f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{rtype}</b> {res["id"]}: {what}</p></div>'


def decorate(res: dict[str, Any], n: int) -> dict[str, Any]:
    """Add the meta and text a real FHIR server returns."""
    res["meta"] = {"versionId": str(1 + n % 3), "lastUpdated": "2025-03-04T15:41:07.512Z",
                   "source": "#ehr-fhir-api", "profile": [PROFILES[res["resourceType"]]]}
    res["text"] = {"status": "generated", "div": narrative(res)}
    if "identifier" not in res and res["resourceType"] != "Coverage":
        system = f"https://ehr.example.org/fhir/sid/{res['resourceType'].lower()}-id"
        res["identifier"] = [{"use": "usual", "system": system, "value": res["id"]}]
    return res


def build(n_admins: int = 3) -> dict[str, Any]:
    """A request with this visit's administration and n_admins - 1 prior ones."""
    req = typical_parts(n_admins)
    pre = req["prefetch"]
    decorate(pre["encounter"], 0)
    for key in ("administrations", "conditions", "charges", "coverage"):
        for n, entry in enumerate(pre[key]["entry"]):
            decorate(entry["resource"], n)
    return req


def typical_parts(n_admins: int) -> dict[str, Any]:
    req = fixture()
    pre = req["prefetch"]
    admins = pre["administrations"]["entry"]
    current, prior = admins[0], admins[1]["resource"]
    visit = dt.datetime.fromisoformat(current["resource"]["effectiveDateTime"])
    entries = [current] + [prior_admin(prior, k, visit - dt.timedelta(days=30 * k)) for k in range(1, n_admins)]
    pre["administrations"]["entry"] = entries
    pre["administrations"]["total"] = len(entries)
    first = pre["conditions"]["entry"][0]
    pre["conditions"]["entry"] += [condition(first["resource"], n, *c) for n, c in enumerate(EXTRA_CONDITIONS, 2)]
    pre["conditions"]["total"] = len(pre["conditions"]["entry"])
    pre["charges"]["entry"] = [charge_item()]
    pre["charges"]["total"] = 1
    return req


def distinct(template: dict[str, Any], rng: random.Random) -> str:
    """One compact JSON copy of template in which every id (patient, encounter, resources, hookInstance) differs."""
    tag = f"{rng.getrandbits(32):08x}"
    text = json.dumps(template, separators=(",", ":")).replace(TAG, tag)
    body = json.loads(text)
    body["hookInstance"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    body["prefetch"]["coverage"]["entry"][0]["resource"]["subscriberId"] = f"{rng.getrandbits(40):010X}"
    return json.dumps(body, separators=(",", ":"))


def size(body: dict[str, Any]) -> tuple[int, int]:
    """(compact, indented) sizes in bytes."""
    return len(json.dumps(body, separators=(",", ":"))), len(json.dumps(body, indent=2))
