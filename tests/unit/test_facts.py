"""Facts from FHIR: routes, doses, drugs, dates of service and settings from real-world shapes."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from cds_service import config, facts
from cds_service.catalog import normalize_ndc
from cds_service.fhir.parse import read
from cds_service.rules.model import RouteClass, Setting, Visit
from cds_service.runtime import terms_of

SETTINGS = config.load(config.DEFAULT_CONFIG)
TERMS = terms_of(SETTINGS)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"

ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "subject": {"reference": "Patient/p1"},
    "period": {"start": "2025-03-04T10:00:00-05:00", "end": "2025-03-04T10:40:00-05:00"},
}


def admin(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": "ma-1",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "309594"}]},
        "subject": {"reference": "Patient/p1"},
        "context": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2025-03-04T10:15:00-05:00",
        "performer": [{"actor": {"reference": "Practitioner/rn"}}],
        "dosage": {
            "route": {"coding": [{"system": SNOMED, "code": "78421000"}]},
            "dose": {"value": 1000, "unit": "mcg", "system": "http://unitsofmeasure.org", "code": "ug"},
        },
    }
    resource.update(overrides)
    return resource


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def visit_of(*admins: dict[str, Any], encounter: dict[str, Any] | None = ENCOUNTER, **extra: Any) -> Visit:
    values: dict[str, Any] = {"encounter": encounter, "administrations": bundle(*admins), **extra}
    return facts.build(read(values), TERMS, hook_kind="encounter", patient_id="p1", encounter_id="e1")


def only(*admins: dict[str, Any], **kwargs: Any) -> Any:
    (inj,) = visit_of(*admins, **kwargs).injections
    return inj


def with_route(route: dict[str, Any] | None, text: str | None = None) -> dict[str, Any]:
    dosage: dict[str, Any] = {"dose": {"value": 1000, "code": "ug", "system": "http://unitsofmeasure.org"}}
    if route is not None:
        dosage["route"] = route
    if text is not None:
        dosage["text"] = text
    return admin(dosage=dosage)


@pytest.mark.parametrize(
    ("system", "code", "route"),
    [
        (SNOMED, "78421000", RouteClass.IM),
        (SNOMED, "255559005", RouteClass.IM),
        (SNOMED, "34206005", RouteClass.SC),
        (SNOMED, "263887005", RouteClass.SC),
        (SNOMED, "47625008", RouteClass.IV_PUSH),
        (SNOMED, "255560000", RouteClass.IV_PUSH),
        (SNOMED, "26643006", RouteClass.ORAL),
        ("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "IM", RouteClass.IM),
        ("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "SQ", RouteClass.SC),
        ("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "IVINJ", RouteClass.IV_PUSH),
        ("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "IVINFUS", RouteClass.IV_INFUSION),
        ("http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "C28161", RouteClass.IM),
        ("http://terminology.hl7.org/CodeSystem/v2-0162", "SC", RouteClass.SC),
    ],
)
def test_coded_routes(system: str, code: str, route: RouteClass) -> None:
    inj = only(with_route({"coding": [{"system": system, "code": code}]}))
    assert (inj.route, inj.route_coded) == (route, True)


def test_vendor_code_beside_standard_coding_uses_the_standard_one() -> None:
    route = {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.4.698288.330", "code": "6"},
                        {"system": SNOMED, "code": "34206005"}]}
    assert (only(with_route(route)).route, only(with_route(route)).route_coded) == (RouteClass.SC, True)


@pytest.mark.parametrize(
    ("route", "text", "expected"),
    [
        ({"text": "IM"}, None, RouteClass.IM),
        ({"text": "Intramuscular"}, None, RouteClass.IM),
        ({"text": "deep subcut"}, None, RouteClass.SC),
        ({"coding": [{"system": "urn:oid:1.2.3", "code": "99", "display": "Subcutaneous"}]}, None, RouteClass.SC),
        (None, "1,000 mcg IM once", RouteClass.IM),
        (None, "give IV push over 2 minutes", RouteClass.IV_PUSH),
    ],
)
def test_text_routes_are_inferred_not_coded(route: Any, text: str | None, expected: RouteClass) -> None:
    inj = only(with_route(route, text))
    assert (inj.route, inj.route_coded) == (expected, False)


def test_no_route_anywhere_is_unknown() -> None:
    inj = only(with_route(None))
    assert (inj.route, inj.route_coded) == (RouteClass.UNKNOWN, False)


def test_iv_with_a_rate_is_an_infusion() -> None:
    ma = with_route({"coding": [{"system": SNOMED, "code": "47625008"}]})
    ma["dosage"]["rateQuantity"] = {"value": 100, "unit": "mL/h", "code": "mL/h", "system": "http://unitsofmeasure.org"}
    assert only(ma).route is RouteClass.IV_INFUSION


@pytest.mark.parametrize(
    ("dose", "mcg"),
    [
        ({"value": 1000, "code": "ug"}, Decimal(1000)),
        ({"value": 1000, "unit": "mcg"}, Decimal(1000)),
        ({"value": 1, "unit": "mg", "code": "mg"}, Decimal(1000)),
        ({"value": 2, "unit": "mL", "code": "mL"}, Decimal(2000)),  # RxNorm 309594 is 1000 mcg/mL
        ({"value": "0.5", "unit": "ml"}, Decimal(500)),
    ],
)
def test_doses_are_normalised_to_mcg(dose: dict[str, Any], mcg: Decimal) -> None:
    ma = admin()
    ma["dosage"]["dose"] = {k: (Decimal(v) if k == "value" else v) for k, v in dose.items()}
    ma["dosage"]["dose"]["value"] = float(ma["dosage"]["dose"]["value"])
    assert only(ma).dose == mcg


def test_ml_dose_uses_the_products_concentration() -> None:
    ma = admin(medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "2001499"}]})  # 5 MG/ML
    ma["dosage"]["dose"] = {"value": 1, "unit": "mL", "code": "mL"}
    assert only(ma).dose == Decimal(5000)
    assert only(ma).drug_units == 5


def test_ml_dose_without_a_known_concentration_is_not_guessed() -> None:
    ma = admin(medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "11248"}]})
    ma["dosage"]["dose"] = {"value": 1, "unit": "mL", "code": "mL"}
    assert only(ma).dose is None


def test_contained_medication_with_strength() -> None:
    ma = admin(
        contained=[{
            "resourceType": "Medication", "id": "med",
            "code": {"coding": [{"system": RXNORM, "code": "11248"}]},
            "ingredient": [{"itemCodeableConcept": {"text": "cyanocobalamin"},
                            "strength": {"numerator": {"value": 1000, "code": "ug"},
                                         "denominator": {"value": 1, "code": "mL"}}}],
        }],
        medicationReference={"reference": "#med"},
        dosage={"route": {"text": "IM"}, "dose": {"value": 1.5, "unit": "mL", "code": "mL"}},
    )
    del ma["medicationCodeableConcept"]
    inj = only(ma)
    assert (inj.drug.key if inj.drug else None, inj.dose, inj.drug_units) == ("cyanocobalamin", Decimal(1500), 2)


def test_a_contained_reference_to_a_resource_that_is_not_a_medication_names_no_drug() -> None:
    """'#b12' naming a contained Patient (or Substance) is no Medication: the drug is unidentified (was a 500,
    found when facts.py was typed against fhir.shapes)."""
    for contained in ({"resourceType": "Patient", "id": "b12"},
                      {"resourceType": "Substance", "id": "b12",
                       "code": {"coding": [{"system": RXNORM, "code": "11248"}]}}):
        ma = admin(contained=[contained], medicationReference={"reference": "#b12"})
        del ma["medicationCodeableConcept"]
        inj = only(ma)
        assert (inj.drug, inj.drug_coded, inj.drug_text) == (None, False, None)


def test_medication_included_in_the_bundle() -> None:
    ma = admin(medicationReference={"reference": "Medication/m9"})
    del ma["medicationCodeableConcept"]
    med = {"resourceType": "Medication", "id": "m9",
           "code": {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "0517-0031-25"}]}}
    values = {"encounter": ENCOUNTER, "administrations": bundle(ma, med)}
    (inj,) = facts.build(read(values), TERMS, hook_kind="encounter", patient_id="p1", encounter_id="e1").injections
    assert (inj.drug.hcpcs if inj.drug else None, inj.drug_coded) == ("J3420", True)


def test_drug_named_only_in_text_is_identified_but_not_coded() -> None:
    inj = only(admin(medicationCodeableConcept={"text": "B12 shot"}))
    assert (inj.drug.key if inj.drug else None, inj.drug_coded, inj.drug_text) == ("cyanocobalamin", False, "B12 shot")


def test_unknown_drug() -> None:
    inj = only(admin(medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "1"}], "text": "Mystery"}))
    assert (inj.drug, inj.drug_text) == (None, "Mystery")


@pytest.mark.parametrize(
    ("ndc", "eleven"),
    [("0517-0031-25", "00517003125"), ("63323-044-44", "63323004444"), ("69680-121-30", "69680012130"),
     ("12345-6789-1", "12345678901"), ("00517003125", "00517003125")],
)
def test_ndc_normalisation(ndc: str, eleven: str) -> None:
    assert normalize_ndc(ndc) == eleven


def test_date_of_service_is_in_the_encounters_time_zone() -> None:
    # 02:30 UTC on 5 March is 21:30 on 4 March in the encounter's -05:00.
    inj = only(admin(effectiveDateTime="2025-03-05T02:30:00Z"))
    assert inj.date_of_service == dt.date(2025, 3, 4)


def test_date_of_service_east_of_utc() -> None:
    enc = copy.deepcopy(ENCOUNTER)
    enc["period"] = {"start": "2025-03-05T08:00:00+09:00"}
    inj = only(admin(effectiveDateTime="2025-03-04T23:30:00Z"), encounter=enc)
    assert inj.date_of_service == dt.date(2025, 3, 5)


def test_admins_of_other_encounters_are_history() -> None:
    earlier = admin(id="ma-0", context={"reference": "Encounter/e0"}, effectiveDateTime="2025-02-02T10:00:00-05:00")
    visit = visit_of(admin(), earlier)
    assert [i.ref for i in visit.injections] == ["MedicationAdministration/ma-1"]
    assert [i.ref for i in visit.history] == ["MedicationAdministration/ma-0"]


def test_admin_without_context_belongs_by_date() -> None:
    same_day = admin(id="ma-2")
    del same_day["context"]
    other_day = admin(id="ma-3", effectiveDateTime="2025-01-01T10:00:00-05:00")
    del other_day["context"]
    visit = visit_of(same_day, other_day)
    assert [i.ref for i in visit.injections] == ["MedicationAdministration/ma-2"]


@pytest.mark.parametrize(
    ("klass", "pos", "setting"),
    [
        ("AMB", "11", Setting.NON_FACILITY),
        ("AMB", "22", Setting.FACILITY),
        ("IMP", None, Setting.FACILITY),
        ("EMER", None, Setting.FACILITY),
        ("O", None, Setting.NON_FACILITY),
        ("I", None, Setting.FACILITY),
        (None, None, Setting.UNKNOWN),
    ],
)
def test_setting(klass: str | None, pos: str | None, setting: Setting) -> None:
    enc = copy.deepcopy(ENCOUNTER)
    if klass is None:
        enc["class"] = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                       "valueCode": "unknown"}]}
    else:
        enc["class"]["code"] = klass
    if pos is not None:
        enc["contained"] = [{
            "resourceType": "Location", "id": "l",
            "type": [{"coding": [{"system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/"
                                            "Place_of_Service_Code_Set", "code": pos}]}],
        }]
    assert visit_of(admin(), encounter=enc).setting is setting


def test_invalid_resource_is_set_aside_and_the_rest_read() -> None:
    bad = admin(id="ma-bad", effectiveDateTime="2025-03-04T10:15:61Z")  # no such second: not R4
    visit = visit_of(admin(), bad)
    assert [i.ref for i in visit.injections] == ["MedicationAdministration/ma-1"]
    (invalid,) = visit.invalid
    assert (invalid.where, invalid.resource_type, invalid.resource_id) == (
        "administrations", "MedicationAdministration", "ma-bad")
    assert invalid.problems and "effectiveDateTime" in invalid.problems[0]
    assert "2025-03-04T10:15:61Z" not in " ".join(invalid.problems)


def test_captured_charges() -> None:
    charge = {
        "resourceType": "ChargeItem", "id": "c1", "status": "billable",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]},
        "subject": {"reference": "Patient/p1"}, "context": {"reference": "Encounter/e1"},
        "occurrenceDateTime": "2025-03-04",
        "extension": [{"url": "https://example.org/procedure-modifier", "valueCoding": {"code": "25"}}],
        "quantity": {"value": 1},
    }
    gone = dict(charge, id="c2", status="entered-in-error")
    (line,) = visit_of(admin(), charges=bundle(charge, gone)).charges
    assert (line.id, line.code, line.system, line.modifiers, line.date_of_service) == (
        "c1", "99213", "cpt", ("25",), dt.date(2025, 3, 4))


# --- the product's dose form (issue 20) ------------------------------------------------------------------------

def named(text: str, route: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """An administration of a product named by its RxNorm name only, with no route charted unless given."""
    dosage: dict[str, Any] = {"dose": {"value": 1, "unit": "tablet"}}
    if route is not None:
        dosage["route"] = route
    return admin(medicationCodeableConcept={"text": text, "coding": [{"system": RXNORM, "display": text}]},
                 dosage=dosage, **more)


@pytest.mark.parametrize("text", [
    "Vitamin B 12 1 MG Oral Tablet", "cyanocobalamin 500 MCG Sublingual Tablet", "Ketorolac 0.5% Ophthalmic Solution",
    "triamcinolone acetonide 0.1% Topical Cream", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
    "ondansetron 4 MG Disintegrating Oral Tablet", "testosterone 50 MG/ACTUAT Transdermal Gel; 1 pump (topical)",
    "Ketorolac Pill",  # the CDS Hooks sandbox's picker names ingredients so

])
def test_a_product_that_is_not_injected_is_not_an_injection_when_no_route_is_charted(text: str) -> None:
    assert visit_of(named(text)).injections == ()


def test_the_product_settles_the_route_only_when_no_injection_route_is_charted() -> None:
    im = {"coding": [{"system": SNOMED, "code": "78421000"}]}
    assert only(named("Vitamin B 12 1 MG Oral Tablet", im)).route is RouteClass.IM  # the chart says IM: its word
    assert only(named("cyanocobalamin 1000 MCG/ML Injectable Solution")).route is RouteClass.UNKNOWN
    oral = {"coding": [{"system": SNOMED, "code": "26643006"}]}
    assert visit_of(named("Vitamin B 12 1 MG Oral Tablet", oral)).injections == ()


def test_a_vaccine_given_by_mouth_or_nose_stays_the_services() -> None:
    rotavirus = named("rotavirus vaccine, live, oral, pentavalent")
    assert [i.ref for i in visit_of(rotavirus).injections] == ["MedicationAdministration/ma-1"]


def test_the_medication_form_says_it_too() -> None:
    medication = {"resourceType": "Medication", "id": "m1", "code": {"text": "cyanocobalamin 1 MG"},
                  "form": {"coding": [{"system": SNOMED, "code": "385055001", "display": "Tablet"}]}}
    given = admin(medicationReference={"reference": "Medication/m1"}, dosage={"dose": {"value": 1}})
    del given["medicationCodeableConcept"]
    assert visit_of(given, medications=bundle(medication)).injections == ()


def test_an_oral_dose_in_another_encounter_is_no_earlier_injection() -> None:
    earlier = named("Vitamin B 12 1 MG Oral Tablet", id="ma-0", context={"reference": "Encounter/e0"},
                    effectiveDateTime="2025-03-01T10:00:00-05:00")
    assert visit_of(admin(), earlier).history == ()


def test_an_injection_route_in_the_dosage_text_keeps_an_oral_named_product_an_injection() -> None:
    given = named("Vitamin B 12 1 MG Oral Tablet")
    given["dosage"]["text"] = "1000 mcg IM left deltoid"
    assert only(given).route is RouteClass.IM


def test_a_time_without_seconds_or_zone_is_read_in_the_encounters_offset() -> None:
    visit = visit_of(admin(effectiveDateTime="2025-03-04T10:30"))
    (inj,) = visit.injections
    assert inj.at is not None and inj.at.isoformat() == "2025-03-04T10:30:00-05:00"
    assert visit.repaired[0].problems == (
        "effectiveDateTime: a date-time without a time zone; read in the encounter's offset (-05:00)",)
