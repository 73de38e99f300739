"""audit_patient: one patient's encounters, each as the live service answers its encounter-discharge."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid
from typing import Any

import pytest

from cds_service import config
from cds_service.audit import COLUMNS, audit_patient
from cds_service.audit.chart import Chart, chart_of, prefetch
from cds_service.config import Settings
from tests.conftest import DEFAULT_CONFIG

PATIENT = "pt-1"
RXNORM_B12 = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "309594"}]}
NDC_B12 = {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "63323-044-44"}]}  # 1,000 mcg/mL
IM = {"coding": [{"system": "http://snomed.info/sct", "code": "78421000"}]}
SOPT = "urn:oid:2.16.840.1.113883.3.221.5"
CPT, HCPCS = "http://www.ama-assn.org/go/cpt", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return config.load(DEFAULT_CONFIG)


def encounter(eid: str, start: str, end: str | None = None, status: str = "finished") -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{PATIENT}"}, "period": {"start": start, **({"end": end} if end else {})}}


def admin(aid: str, eid: str, when: str, dose: dict[str, Any] | None = None, **drug: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration", "id": aid, "status": "completed",
        **(drug or {"medicationCodeableConcept": RXNORM_B12}),
        "subject": {"reference": f"Patient/{PATIENT}"}, "context": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": when, "performer": [{"actor": {"reference": "Practitioner/rn-1"}}],
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "D51.0"}]}],
        "dosage": {"route": IM, "dose": dose or {"value": 1000, "unit": "mcg", "code": "ug"}},
    }


def coverage(code: str, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    return {"resourceType": "Coverage", "id": f"cov-{code}", "status": "active",
            "type": {"coding": [{"system": SOPT, "code": code}]}, "beneficiary": {"reference": f"Patient/{PATIENT}"},
            "payor": [{"display": "payer"}], **({"period": period} if period else {})}


def charge(cid: str, eid: str, code: str, units: int = 1, on: str | None = None, **extra: Any) -> dict[str, Any]:
    system = CPT if code[0].isdigit() else HCPCS
    return {"resourceType": "ChargeItem", "id": cid, "status": "billable",
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{PATIENT}"}, "context": {"reference": f"Encounter/{eid}"},
            "occurrenceDateTime": extra.pop("date", "2025-03-04"), "quantity": {"value": units},
            **({"service": [{"reference": f"MedicationAdministration/{on}"}]} if on else {}), **extra}


def visit(n: int, day: str) -> list[dict[str, Any]]:
    """Encounter e<n> on a day (UTC-5), with one B12 1,000 mcg IM shot a<n> at 10:15."""
    return [encounter(f"e{n}", f"{day}T10:00:00-05:00", f"{day}T10:30:00-05:00"),
            admin(f"a{n}", f"e{n}", f"{day}T10:15:00-05:00")]


def by_rule(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["rule_id"]: row for row in rows}


def test_a_b12_shot_with_nothing_charged_is_a_missed_96372_and_j3420(settings: Settings) -> None:
    rows = audit_patient([*visit(1, "2025-03-04"), coverage("121")], {}, settings)
    assert [r["rule_id"] for r in rows] == ["admin-96372", "drug-waste-modifier"]
    row = rows[0]
    assert {k: row[k] for k in COLUMNS if k not in ("card_uuid", "summary")} == {
        "encounter_id": "e1", "patient_id": PATIENT, "admin_id": "a1", "date": "2025-03-04", "month": "2025-03",
        "rule_id": "admin-96372", "group": "billing", "indicator": "info", "action": "create",
        "codes": "96372 J3420", "drug_code": "J3420", "units": 1,
        "part_b_limit": "1.27",  # J3420 x1 at $1.271, CMS 2025 Q1
    }
    assert row["missed_units"] == {"J3420": 1}
    assert row["card_uuid"] == str(uuid.uuid5(
        uuid.UUID("9d7f0f7e-0e4c-4b5e-9a53-3c1f3b1d2a61"),
        f"{uuid.uuid5(uuid.NAMESPACE_URL, 'audit:e1')}|admin-96372|MedicationAdministration/a1|0",
    ))
    waste = rows[1]
    assert (waste["action"], waste["codes"], waste["drug_code"], waste["units"]) == ("none", "", "", "")


def test_captured_charges_give_update_and_delete_rows(settings: Settings) -> None:
    rows = audit_patient([
        *visit(1, "2025-03-04"), coverage("51"),
        charge("c1", "e1", "96372", on="a1"), charge("c2", "e1", "J3420", 3, on="a1"),
        charge("c3", "e1", "99213"), charge("c4", "e1", "J1885", 2),
    ], {}, settings)
    rules = by_rule(rows)
    assert (rules["charge-units-mismatch"]["action"], rules["charge-units-mismatch"]["codes"],
            rules["charge-units-mismatch"]["units"], rules["charge-units-mismatch"]["missed_units"]) == (
        "update", "J3420", 1, {})
    assert (rules["same-day-em-modifier-25"]["action"], rules["same-day-em-modifier-25"]["codes"],
            rules["same-day-em-modifier-25"]["admin_id"]) == ("update", "99213", "a1")  # the injection it sits beside
    assert (rules["charge-unsupported"]["action"], rules["charge-unsupported"]["codes"],
            rules["charge-unsupported"]["indicator"]) == ("delete", "", "critical")
    assert "admin-96372" not in rules


def test_a_referenced_medication_comes_from_the_lookup(settings: Settings) -> None:
    two_ml = {"value": 2, "unit": "mL", "code": "mL"}
    chart = [encounter("e1", "2025-03-04T10:00:00-05:00"), coverage("51"),
             admin("a1", "e1", "2025-03-04T10:15:00-05:00", two_ml,
                   medicationReference={"reference": "Medication/vial"})]
    vial = {"resourceType": "Medication", "id": "vial", "code": NDC_B12}
    found = by_rule(audit_patient(chart, {"Medication/vial": vial}, settings))
    assert (found["admin-96372"]["codes"], found["admin-96372"]["units"]) == ("96372 J3420", 2)
    assert found["dose-above-label"]["admin_id"] == "a1"
    missing = by_rule(audit_patient(chart, {}, settings))
    assert missing["admin-96372"]["codes"] == "96372"  # drug unknown: no drug line
    assert "drug-uncoded" in missing


def test_the_prefetch_holds_what_the_ehr_had_at_discharge() -> None:
    chart = chart_of([
        *visit(1, "2025-01-10"), *visit(2, "2025-02-10"), *visit(3, "2025-03-10"),
        {**admin("a0", "elsewhere", "2025-02-10T11:00:00-05:00"), "context": None},  # after e2's end: not yet
        charge("c1", "e1", "96372", on="a1"), charge("c2", "e2", "96372", on="a2"),
        coverage("51", "2020-01-01", "2025-01-31"), coverage("121", "2025-02-01"),
    ])
    assert isinstance(chart, Chart)
    values = prefetch(chart.encounters[1], chart, {})
    assert values["encounter"]["id"] == "e2"

    def ids(key: str) -> list[str]:
        return [e["resource"]["id"] for e in values[key]["entry"]]

    assert ids("administrations") == ["a1", "a2"]
    assert ids("charges") == ["c2"]
    assert ids("coverage") == ["cov-121"]
    assert [e["fullUrl"] for e in values["charges"]["entry"]] == ["ChargeItem/c2"]


def test_an_early_dose_outside_the_loading_phase_is_found_from_the_history(settings: Settings) -> None:
    days = ["2025-01-06", "2025-02-06", "2025-03-06", "2025-04-07", "2025-04-17"]
    resources = [r for n, day in enumerate(days, start=1) for r in visit(n, day)] + [coverage("121")]
    rows = audit_patient(resources, {}, settings)
    assert [r["encounter_id"] for r in rows if r["rule_id"] == "frequency-exceeded"] == ["e5"]
    assert [r["encounter_id"] for r in rows if r["rule_id"] == "admin-96372"] == ["e1", "e2", "e3", "e4", "e5"]


def test_the_window_reads_local_start_dates_and_skips_encounters_never_discharged(settings: Settings) -> None:
    late = [encounter("late", "2025-03-31T23:30:00-08:00"), admin("al", "late", "2025-03-31T23:40:00-08:00")]
    cancelled = [encounter("gone", "2025-03-15T10:00:00-05:00", status="cancelled"),
                 admin("ag", "gone", "2025-03-15T10:10:00-05:00")]
    resources = [*late, *cancelled, *visit(1, "2025-04-01"), coverage("51")]
    march = audit_patient(resources, {}, settings, since=dt_date("2025-03-01"), until=dt_date("2025-03-31"))
    assert {r["encounter_id"] for r in march} == {"late"}
    assert {r["date"] for r in march if r["rule_id"] == "admin-96372"} == {"2025-03-31"}
    everything = audit_patient(resources, {}, settings)
    assert {r["encounter_id"] for r in everything} == {"late", "e1"}


def test_a_bundle_a_settings_path_and_a_pickle_give_the_same_rows(settings: Settings) -> None:
    resources = [*visit(1, "2025-03-04"), coverage("121")]
    as_bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    expected = audit_patient(resources, {}, settings)
    assert audit_patient(as_bundle, {}, str(DEFAULT_CONFIG)) == expected
    assert pickle.loads(pickle.dumps(audit_patient))(list(reversed(resources)), {}, DEFAULT_CONFIG) == expected
    assert audit_patient([coverage("121")], {}, settings) == []


def dt_date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
