"""admin-96372: the administration code and the drug line, on tiny facts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from cds_service.rules import evaluate
from cds_service.rules.billing import admin_96372, admin_code_alternative, drug_waste_modifier, multiple_injections
from cds_service.rules.model import (
    BillingPolicy,
    ChargeLine,
    Drug,
    DrugClass,
    Finding,
    Injection,
    PayerProfile,
    Quantity,
    RouteClass,
    Setting,
    Visit,
)
from cds_service.rules.plan import prepare

B12 = Drug(
    key="cyanocobalamin",
    display="Cyanocobalamin",
    hcpcs="J3420",
    billing_unit=Quantity(Decimal(1000), "ug"),
    allowed_routes=frozenset({RouteClass.IM, RouteClass.SC}),
    max_dose=Decimal(1000),
)
DOS = dt.date(2025, 3, 4)


def make_injection(**overrides: Any) -> Injection:
    fields: dict[str, Any] = {
        "ref": "MedicationAdministration/ma-1",
        "kind": "administration",
        "status": "completed",
        "drug": B12,
        "drug_coded": True,
        "route": RouteClass.IM,
        "route_coded": True,
        "dose": Decimal(1000),
        "date_of_service": DOS,
        "performer": True,
        "diagnoses": ("D51.0",),
    }
    fields.update(overrides)
    return Injection(**fields)


def make_visit(*injections: Injection, **overrides: Any) -> Visit:
    fields: dict[str, Any] = {
        "hook_kind": "encounter",
        "patient_ref": "Patient/p1",
        "encounter_ref": "Encounter/e1",
        "setting": Setting.NON_FACILITY,
        "date_of_service": DOS,
        "injections": injections,
    }
    fields.update(overrides)
    return Visit(**fields)


def lines(inj: Injection, visit: Visit | None = None) -> list[tuple[str, Decimal]]:
    visit = prepare(visit or make_visit(inj))
    return [(line.code, line.units) for f in admin_96372(inj, visit) for line in f.creates]


@pytest.mark.parametrize(
    ("mcg", "units"),
    [(100, 1), (999, 1), (1000, 1), (1001, 2), (1500, 2), (2000, 2), (2001, 3), (Decimal("0.5"), 1)],
)
def test_j3420_units_are_ceil_of_mcg_over_1000(mcg: int, units: int) -> None:
    assert lines(make_injection(dose=Decimal(mcg))) == [("96372", 1), ("J3420", units)]


@given(st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100000), places=3))
def test_units_always_cover_the_dose(mcg: Decimal) -> None:
    units = make_injection(dose=mcg).drug_units
    assert units is not None
    assert (units - 1) * 1000 < mcg <= units * 1000


@pytest.mark.parametrize("route", [RouteClass.IM, RouteClass.SC])
def test_sc_and_im_bill_96372(route: RouteClass) -> None:
    assert lines(make_injection(route=route))[0] == ("96372", 1)


@pytest.mark.parametrize(
    "route",
    [RouteClass.IV_PUSH, RouteClass.IV_INFUSION, RouteClass.INTRA_ARTERIAL, RouteClass.ORAL, RouteClass.UNKNOWN],
)
def test_other_routes_never_bill_96372(route: RouteClass) -> None:
    assert lines(make_injection(route=route)) == []


@pytest.mark.parametrize("status", ["not-done", "in-progress", "on-hold", "stopped", "unknown", "entered-in-error"])
def test_only_completed_admins_are_billed(status: str) -> None:
    assert lines(make_injection(status=status)) == []


@pytest.mark.parametrize(
    "drug_class",
    [DrugClass.VACCINE, DrugClass.ANTINEOPLASTIC_HORMONAL, DrugClass.ANTINEOPLASTIC_NON_HORMONAL],
)
def test_vaccines_and_antineoplastics_take_other_codes(drug_class: DrugClass) -> None:
    drug = replace(B12, drug_class=drug_class)
    assert lines(make_injection(drug=drug)) == []


def test_facility_setting_gets_no_96372() -> None:
    inj = make_injection()
    assert lines(inj, make_visit(inj, setting=Setting.FACILITY)) == []


def test_unknown_setting_still_bills() -> None:
    inj = make_injection()
    assert lines(inj, make_visit(inj, setting=Setting.UNKNOWN)) == [("96372", 1), ("J3420", 1)]


def test_missing_dose_bills_the_injection_without_a_drug_line() -> None:
    assert lines(make_injection(dose=None)) == [("96372", 1)]


def test_unidentified_drug_bills_the_injection_alone() -> None:
    assert lines(make_injection(drug=None, drug_text="B12 shot")) == [("96372", 1)]


@pytest.mark.parametrize("status", ["draft", "active"])
def test_order_being_signed_is_planned(status: str) -> None:
    inj = make_injection(kind="order", ref="MedicationRequest/mr-1", status=status)
    assert lines(inj, make_visit(inj, hook_kind="order-sign")) == [("96372", 1), ("J3420", 1)]


def test_captured_lines_are_not_suggested_again() -> None:
    inj = make_injection()
    on_admin = ChargeLine("96372", "cpt", service=(inj.ref,))
    assert lines(inj, make_visit(inj, charges=(on_admin,))) == [("J3420", 1)]
    same_day = ChargeLine("J3420", "hcpcs", date_of_service=DOS)
    assert lines(inj, make_visit(inj, charges=(on_admin, same_day))) == []


def test_charge_for_another_admin_or_day_does_not_count() -> None:
    inj = make_injection()
    other_admin = ChargeLine("96372", "cpt", service=("MedicationAdministration/other",))
    other_day = ChargeLine("J3420", "hcpcs", date_of_service=dt.date(2025, 3, 3))
    assert lines(inj, make_visit(inj, charges=(other_admin, other_day))) == [("96372", 1), ("J3420", 1)]


def test_suggested_lines_carry_date_and_admin() -> None:
    inj = make_injection()
    (finding,) = admin_96372(inj, prepare(make_visit(inj)))
    assert {(line.date_of_service, line.service) for line in finding.creates} == {(DOS, (inj.ref,))}


def test_evaluate_labels_findings_and_skips_disabled_rules() -> None:
    inj = make_injection()
    visit = make_visit(inj)
    findings = list(evaluate(visit, {"admin-96372": {}}))
    assert [(f.rule, f.subject) for f in findings] == [("admin-96372", inj.ref)]
    assert list(evaluate(visit, {})) == []


def test_one_finding_per_admin() -> None:
    first = make_injection()
    second = make_injection(ref="MedicationAdministration/ma-2", route=RouteClass.SC)
    findings = list(evaluate(make_visit(first, second), {"admin-96372": {}}))
    assert [f.subject for f in findings] == [first.ref, second.ref]


# --- The other billing rules, with code tables like config/default.yaml's -----------------------
# POLICY, the payers, the drugs and planned_visit are shared with test_rules_plan.py and test_rules_charges.py.

POLICY = BillingPolicy(
    admin_codes={
        "iv_push": "96374",
        "iv_push_additional": "96375",
        "iv_infusion": "96365",
        "intra_arterial": "96373",
        "vaccine": "90471",
        "vaccine_additional": "90472",
        "antineoplastic_non_hormonal": "96401",
        "antineoplastic_hormonal": "96402",
    },
    medicare_vaccine_codes={"influenza": "G0008", "pneumococcal": "G0009", "hepatitis-b": "G0010"},
    em_needing_25=frozenset({"99202", "99203", "99204", "99205", "99212", "99213", "99214", "99215"}),
    em_bundled=frozenset({"99211"}),
    noc_codes=frozenset({"J3490", "J3590", "J7699", "J7799", "J8499", "J8999", "J9999", "C9399"}),
)
# Captured lines under these codes are drug lines (facts marks them from CMS's files and the catalog).
DRUG_CODES = frozenset({"J3420", "J3490", "J1885", "J0696", "J9217", "J9250", "90686", "90732", "90746"})
MEDICARE = PayerProfile(key="medicare-part-b", display="Medicare Part B", waste_modifiers=True,
                        medicare_vaccine_codes=True)
COMMERCIAL = PayerProfile(key="commercial", display="Commercial")
PAYER_59 = replace(COMMERCIAL, key="payer-59", multiple_injection_modifier="59")
KETOROLAC = Drug(key="ketorolac", display="Ketorolac", hcpcs="J1885", billing_unit=Quantity(Decimal(15), "mg"),
                 allowed_routes=frozenset({RouteClass.IM, RouteClass.IV_PUSH}))
CEFTRIAXONE = Drug(key="ceftriaxone", display="Ceftriaxone", hcpcs="J0696", billing_unit=Quantity(Decimal(250), "mg"),
                   allowed_routes=frozenset({RouteClass.IM, RouteClass.IV_PUSH, RouteClass.IV_INFUSION}))
LEUPROLIDE = Drug(key="leuprolide", display="Leuprolide", hcpcs="J9217", billing_unit=Quantity(Decimal("7.5"), "mg"),
                  allowed_routes=frozenset({RouteClass.IM, RouteClass.SC}),
                  drug_class=DrugClass.ANTINEOPLASTIC_HORMONAL)
METHOTREXATE = Drug(key="methotrexate", display="Methotrexate", hcpcs="J9250", billing_unit=Quantity(Decimal(5), "mg"),
                    allowed_routes=frozenset({RouteClass.IM, RouteClass.SC}),
                    drug_class=DrugClass.ANTINEOPLASTIC_NON_HORMONAL)
FLU = Drug(key="influenza-vaccine", display="Influenza vaccine", hcpcs="90686",
           billing_unit=Quantity(Decimal("0.5"), "mL"), allowed_routes=frozenset({RouteClass.IM}),
           drug_class=DrugClass.VACCINE, vaccine_kind="influenza")
PNEUMO = Drug(key="pneumococcal-vaccine", display="PPSV23", hcpcs="90732", billing_unit=Quantity(Decimal("0.5"), "mL"),
              allowed_routes=frozenset({RouteClass.IM, RouteClass.SC}), drug_class=DrugClass.VACCINE,
              vaccine_kind="pneumococcal")
HEP_B = Drug(key="hepatitis-b-vaccine", display="Hepatitis B vaccine", hcpcs="90746",
             billing_unit=Quantity(Decimal(1), "mL"), allowed_routes=frozenset({RouteClass.IM}),
             drug_class=DrugClass.VACCINE, vaccine_kind="hepatitis-b")
TDAP = Drug(key="tdap-vaccine", display="Tdap", hcpcs="90715", billing_unit=Quantity(Decimal("0.5"), "mL"),
            allowed_routes=frozenset({RouteClass.IM}), drug_class=DrugClass.VACCINE)
REF1 = "MedicationAdministration/ma-1"
REF2 = "MedicationAdministration/ma-2"
NINE = dt.datetime(2025, 3, 4, 9, 0)
TEN = dt.datetime(2025, 3, 4, 10, 0)


def planned_visit(*injections: Injection, **overrides: Any) -> Visit:
    """A visit billed with POLICY, its plan prepared as evaluate() does."""
    return prepare(make_visit(*injections, **{"policy": POLICY, **overrides}))


def cpt(code: str, ref: str = REF1, units: int = 1, modifiers: tuple[str, ...] = ()) -> ChargeLine:
    """A planned line: dated DOS, resting on one admin, no id."""
    return ChargeLine(code, "cpt", Decimal(units), modifiers, DOS, service=(ref,))


def hcpcs(code: str, ref: str = REF1, units: int = 1, modifiers: tuple[str, ...] = ()) -> ChargeLine:
    return ChargeLine(code, "hcpcs", Decimal(units), modifiers, DOS, service=(ref,))


def captured_line(code: str, charge_id: str | None, ref: str | None = REF1, **overrides: Any) -> ChargeLine:
    """A ChargeItem already on the encounter, with its id, resting on `ref` (or only dated, for None)."""
    fields: dict[str, Any] = {"code": code, "system": "hcpcs" if code[0].isalpha() else "cpt",
                              "date_of_service": DOS, "id": charge_id, "service": (ref,) if ref else (),
                              "drug": code in DRUG_CODES}
    fields.update(overrides)
    return ChargeLine(**fields)


# admin-code-alternative


def test_iv_push_suggests_96374_and_the_drug_line() -> None:
    inj = make_injection(route=RouteClass.IV_PUSH)
    visit = planned_visit(inj)
    assert list(admin_code_alternative(inj, visit)) == [
        Finding(creates=(cpt("96374"), hcpcs("J3420")), detail={"code": "96374"})
    ]
    assert list(admin_96372(inj, visit)) == []


def test_im_injection_is_not_an_alternative() -> None:
    inj = make_injection()
    assert list(admin_code_alternative(inj, planned_visit(inj))) == []


def test_alternative_is_quiet_when_its_lines_are_captured() -> None:
    inj = make_injection(route=RouteClass.IV_PUSH)
    charges = (captured_line("96374", "ci-1"), captured_line("J3420", "ci-2"))
    assert list(admin_code_alternative(inj, planned_visit(inj, charges=charges))) == []


def test_wrong_admin_code_captured_is_not_suggested_again() -> None:
    inj = make_injection(route=RouteClass.IV_PUSH)
    visit = planned_visit(inj, charges=(captured_line("96372", "ci-1"),))
    assert list(admin_code_alternative(inj, visit)) == [Finding(creates=(hcpcs("J3420"),), detail={"code": "96374"})]
    visit = planned_visit(inj, charges=(captured_line("96372", "ci-1"), captured_line("J3420", "ci-2")))
    assert list(admin_code_alternative(inj, visit)) == []


# multiple-injections


def test_two_injections_on_a_day_make_one_finding() -> None:
    first = make_injection(at=NINE)
    second = make_injection(ref=REF2, route=RouteClass.SC, drug=KETOROLAC, dose=Decimal(30), at=TEN)
    assert list(multiple_injections(planned_visit(first, second))) == [
        Finding(detail={"count": 2, "date": DOS, "modifier": None, "admins": [REF1, REF2]})
    ]


def test_payer_modifier_is_added_to_the_second_captured_96372() -> None:
    first = make_injection(at=NINE)
    second = make_injection(ref=REF2, at=TEN)
    line1, line2 = captured_line("96372", "ci-1", REF1), captured_line("96372", "ci-2", REF2)
    (finding,) = multiple_injections(planned_visit(first, second, payer=PAYER_59, charges=(line1, line2)))
    assert finding.updates == (replace(line2, modifiers=("59",)),)
    assert finding.updates[0].id == "ci-2"
    assert (finding.creates, finding.deletes) == ((), ())
    assert finding.detail == {"count": 2, "date": DOS, "modifier": "59", "admins": [REF1, REF2]}


def test_captured_modifier_needs_no_update() -> None:
    first = make_injection(at=NINE)
    second = make_injection(ref=REF2, at=TEN)
    charges = (captured_line("96372", "ci-1", REF1), captured_line("96372", "ci-2", REF2, modifiers=("59",)))
    (finding,) = multiple_injections(planned_visit(first, second, payer=PAYER_59, charges=charges))
    assert finding.updates == ()


def test_one_injection_a_day_is_not_multiple() -> None:
    assert list(multiple_injections(planned_visit(make_injection()))) == []
    other_day = make_injection(ref=REF2, date_of_service=dt.date(2025, 3, 5))
    assert list(multiple_injections(planned_visit(make_injection(), other_day))) == []


def test_an_iv_push_is_not_a_second_injection() -> None:
    push = make_injection(ref=REF2, route=RouteClass.IV_PUSH)
    assert list(multiple_injections(planned_visit(make_injection(), push))) == []


# drug-waste-modifier


def test_unknown_container_under_medicare_asks_to_confirm() -> None:
    inj = make_injection(container=None, ndc="68083-561-25")
    assert list(drug_waste_modifier(inj, planned_visit(inj, payer=MEDICARE))) == [
        Finding(detail={"container": "unknown", "code": "J3420", "ndc": "68083-561-25"})
    ]


def test_single_dose_captured_without_jz_gets_jz() -> None:
    inj = make_injection(container="single-dose")
    line = captured_line("J3420", "ci-7")
    (finding,) = drug_waste_modifier(inj, planned_visit(inj, payer=MEDICARE, charges=(line,)))
    assert finding.updates == (replace(line, modifiers=("JZ",)),)
    assert finding.updates[0].id == "ci-7"
    assert finding.detail == {"container": "single-dose", "code": "J3420"}


@pytest.mark.parametrize("modifier", ["JZ", "JW"])
def test_single_dose_captured_with_a_waste_modifier_is_fine(modifier: str) -> None:
    inj = make_injection(container="single-dose")
    line = captured_line("J3420", "ci-7", modifiers=(modifier,))
    assert list(drug_waste_modifier(inj, planned_visit(inj, payer=MEDICARE, charges=(line,)))) == []


def test_single_dose_not_captured_needs_nothing_as_the_planned_line_has_jz() -> None:
    inj = make_injection(container="single-dose")
    visit = planned_visit(inj, payer=MEDICARE)
    assert list(drug_waste_modifier(inj, visit)) == []
    assert visit.plan[inj.ref].drug == hcpcs("J3420", modifiers=("JZ",))


@pytest.mark.parametrize(
    ("inj", "payer"),
    [
        (make_injection(container="multi-dose"), MEDICARE),
        (make_injection(container=None), COMMERCIAL),
        (make_injection(container="single-dose"), COMMERCIAL),
        (make_injection(container="single-dose"), None),
        (make_injection(drug=FLU, dose=Decimal("0.5"), container="single-dose"), MEDICARE),
        (make_injection(drug=FLU, dose=Decimal("0.5"), container=None), MEDICARE),
    ],
    ids=["multi-dose", "commercial-unknown", "commercial-single", "no-payer", "vaccine-single", "vaccine-unknown"],
)
def test_no_waste_modifier_needed(inj: Injection, payer: PayerProfile | None) -> None:
    line = captured_line(inj.drug.hcpcs if inj.drug else "J3420", "ci-7")
    assert list(drug_waste_modifier(inj, planned_visit(inj, payer=payer))) == []
    assert list(drug_waste_modifier(inj, planned_visit(inj, payer=payer, charges=(line,)))) == []
