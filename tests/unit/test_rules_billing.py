"""admin-96372: the administration code and the drug line, on tiny facts."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    max_dose=Quantity(Decimal(1000), "ug"),
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
    drug = Drug(**{**B12.__dict__, "drug_class": drug_class})
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
