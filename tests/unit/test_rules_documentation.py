"""Documentation gaps (rules/documentation.py), one rule at a time, on tiny facts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from cds_service.rules import RULES, documentation, evaluate
from cds_service.rules.documentation import (
    admin_time_missing,
    compounded_drug,
    dos_mismatch,
    dose_above_label,
    dose_missing,
    drug_uncoded,
    drug_unknown,
    noc_drug_code,
    patient_supplied_drug,
    performer_missing,
    route_contrary_to_label,
    route_missing,
    route_uncoded,
    self_administered_drug,
    status_not_completed,
)
from cds_service.rules.model import BillingPolicy, ChargeLine, Finding, Injection, Quantity, RouteClass, Visit
from tests.unit.factories import (
    ADMIN_REF,
    B12,
    DOS,
    HYDROXOCOBALAMIN,
    METHYLCOBALAMIN,
    make_drug,
    make_injection,
    make_order,
    make_payer,
    make_visit,
)

Rule = Callable[[Injection, Visit], Iterator[Finding]]

ALL_RULES: list[Rule] = [
    route_missing,
    route_uncoded,
    route_contrary_to_label,
    dose_missing,
    dose_above_label,
    drug_uncoded,
    admin_time_missing,
    dos_mismatch,
    performer_missing,
    status_not_completed,
    patient_supplied_drug,
    noc_drug_code,
    compounded_drug,
    self_administered_drug,
    drug_unknown,
]
NOT_COMPLETED = ["in-progress", "on-hold", "not-done", "stopped", "unknown"]
DAY_BEFORE = DOS - dt.timedelta(days=1)
DAY_AFTER = DOS + dt.timedelta(days=1)
NOC_POLICY = BillingPolicy(noc_codes=frozenset({"J3490"}))
KETOROLAC = make_drug(key="ketorolac", display="Ketorolac", hcpcs="J1885", billing_unit=Quantity(Decimal(15), "mg"))


def run(rule: Rule, inj: Injection, visit: Visit | None = None) -> list[Finding]:
    return list(rule(inj, visit or make_visit(inj)))


def run_order(rule: Rule, order: Injection) -> list[Finding]:
    return run(rule, order, make_visit(order, hook_kind="order-sign", date_of_service=None))


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.__name__)
def test_fully_documented_admin_has_no_gaps(rule: Rule) -> None:
    assert run(rule, make_injection()) == []


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.__name__)
def test_fully_documented_order_has_no_gaps(rule: Rule) -> None:
    assert run_order(rule, make_order()) == []


# route-missing


IF_IM = {"if_route": "IM", "if_im": [{"code": "96372", "units": Decimal(1)}, {"code": "J3420", "units": Decimal(1)}],
         "if_im_dose_needed": False}


def test_route_missing_fires_on_unknown_route_and_says_what_im_would_bill() -> None:
    assert run(route_missing, make_injection(route=RouteClass.UNKNOWN, route_coded=False)) == [Finding(detail=IF_IM)]
    assert run(route_missing, make_injection(route=RouteClass.UNKNOWN, drug=None)) == [Finding()]


def test_route_missing_does_not_ask_for_a_dose_of_a_drug_the_patient_supplied() -> None:
    [finding] = run(route_missing, make_injection(route=RouteClass.UNKNOWN, patient_supplied=True))
    assert finding.detail == {"if_route": "IM", "if_im": [{"code": "96372", "units": Decimal(1)}],
                              "if_im_dose_needed": False}


def test_route_missing_says_nothing_would_bill_for_a_drug_whose_label_allows_neither_im_nor_sc() -> None:
    inj = make_injection(route=RouteClass.UNKNOWN)
    iv_only = msgspec.structs.replace(inj.drug, allowed_routes=frozenset({RouteClass.IV_PUSH}))
    assert run(route_missing, msgspec.structs.replace(inj, drug=iv_only)) == [Finding()]
    sc_only = msgspec.structs.replace(inj.drug, allowed_routes=frozenset({RouteClass.SC}))
    [finding] = run(route_missing, msgspec.structs.replace(inj, drug=sc_only))
    assert finding.detail["if_route"] == "SC"


@pytest.mark.parametrize("status", ["draft", "active"])
def test_route_missing_fires_on_order_being_signed(status: str) -> None:
    order = make_order(status=status, route=RouteClass.UNKNOWN, route_coded=False)
    assert run_order(route_missing, order) == [Finding(detail=IF_IM)]


@pytest.mark.parametrize("status", NOT_COMPLETED)
def test_route_missing_ignores_admin_not_completed(status: str) -> None:
    assert run(route_missing, make_injection(status=status, route=RouteClass.UNKNOWN, route_coded=False)) == []


@pytest.mark.parametrize("route", [r for r in RouteClass if r is not RouteClass.UNKNOWN])
@pytest.mark.parametrize("coded", [True, False])
def test_route_missing_silent_when_route_known(route: RouteClass, coded: bool) -> None:
    assert run(route_missing, make_injection(route=route, route_coded=coded)) == []


# route-uncoded


@pytest.mark.parametrize("route", [RouteClass.IM, RouteClass.SC, RouteClass.IV_PUSH])
def test_route_uncoded_fires_on_text_inferred_route(route: RouteClass) -> None:
    inj = make_injection(route=route, route_coded=False)
    assert run(route_uncoded, inj) == [Finding(detail={"route": route.value})]


def test_route_uncoded_fires_on_order_too() -> None:
    assert run_order(route_uncoded, make_order(route_coded=False)) == [Finding(detail={"route": "IM"})]


@pytest.mark.parametrize("route", [RouteClass.IM, RouteClass.SC, RouteClass.IV_PUSH])
def test_route_uncoded_silent_on_coded_route(route: RouteClass) -> None:
    assert run(route_uncoded, make_injection(route=route, route_coded=True)) == []


def test_route_uncoded_leaves_unknown_route_to_route_missing() -> None:
    assert run(route_uncoded, make_injection(route=RouteClass.UNKNOWN, route_coded=False)) == []


@pytest.mark.parametrize("status", NOT_COMPLETED)
def test_route_uncoded_ignores_admin_not_completed(status: str) -> None:
    assert run(route_uncoded, make_injection(status=status, route_coded=False)) == []


# route-contrary-to-label


@pytest.mark.parametrize(
    "route",
    [RouteClass.IV_PUSH, RouteClass.IV_INFUSION, RouteClass.INTRA_ARTERIAL, RouteClass.ORAL, RouteClass.OTHER],
)
def test_route_contrary_to_label_fires_for_b12_off_label(route: RouteClass) -> None:
    assert run(route_contrary_to_label, make_injection(route=route)) == [
        Finding(detail={"route": route.value, "allowed": ["IM", "SC"]})
    ]


def test_route_contrary_to_label_b12_iv_push_detail() -> None:
    (finding,) = run(route_contrary_to_label, make_injection(route=RouteClass.IV_PUSH, route_coded=False))
    assert finding.detail == {"route": "IV_PUSH", "allowed": ["IM", "SC"]}


def test_route_contrary_to_label_uses_the_drugs_own_routes() -> None:
    inj = make_injection(drug=HYDROXOCOBALAMIN, route=RouteClass.SC)
    assert run(route_contrary_to_label, inj) == [Finding(detail={"route": "SC", "allowed": ["IM"]})]


@pytest.mark.parametrize("route", [RouteClass.IM, RouteClass.SC])
def test_route_contrary_to_label_silent_on_labelled_routes(route: RouteClass) -> None:
    assert run(route_contrary_to_label, make_injection(route=route)) == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"drug": None, "drug_coded": False, "route": RouteClass.IV_PUSH},
        {"route": RouteClass.UNKNOWN, "route_coded": False},
        {"route": RouteClass.IV_PUSH, "status": "not-done"},
    ],
    ids=["unknown-drug", "unknown-route", "not-completed"],
)
def test_route_contrary_to_label_silent_without_drug_or_route(overrides: dict[str, Any]) -> None:
    assert run(route_contrary_to_label, make_injection(**overrides)) == []


# dose-missing


@pytest.mark.parametrize("drug", [B12, None], ids=["known-drug", "unknown-drug"])
def test_dose_missing_absent(drug: Any) -> None:
    inj = make_injection(drug=drug, dose=None, dose_documented=False)
    assert run(dose_missing, inj) == [Finding(detail={"reason": "absent"})]


def test_dose_missing_unconvertible_with_known_drug() -> None:
    inj = make_injection(dose=None, dose_documented=True)
    assert run(dose_missing, inj) == [Finding(detail={"reason": "unconvertible"})]


def test_dose_missing_unconvertible_needs_a_known_drug() -> None:
    inj = make_injection(drug=None, drug_coded=False, dose=None, dose_documented=True)
    assert run(dose_missing, inj) == []


def test_dose_missing_fires_on_order_without_dose() -> None:
    order = make_order(dose=None, dose_documented=False)
    assert run_order(dose_missing, order) == [Finding(detail={"reason": "absent"})]


@pytest.mark.parametrize("dose", [Decimal("0.5"), Decimal(100), Decimal(1000), Decimal(5000)])
def test_dose_missing_silent_when_dose_present(dose: Decimal) -> None:
    assert run(dose_missing, make_injection(dose=dose)) == []


@pytest.mark.parametrize("status", NOT_COMPLETED)
def test_dose_missing_ignores_admin_not_completed(status: str) -> None:
    assert run(dose_missing, make_injection(status=status, dose=None, dose_documented=False)) == []


# dose-above-label


@pytest.mark.parametrize(("dose", "fires"), [(100, False), (999, False), (1000, False), (1001, True), (2000, True)])
def test_dose_above_label_max_1000_ug(dose: int, fires: bool) -> None:
    expected = [Finding(detail={"dose": Decimal(dose), "max": Decimal(1000), "unit": "ug"})] if fires else []
    assert run(dose_above_label, make_injection(dose=Decimal(dose))) == expected


def test_dose_above_label_fractional_excess() -> None:
    (finding,) = run(dose_above_label, make_injection(dose=Decimal("1000.01")))
    assert finding.detail == {"dose": Decimal("1000.01"), "max": Decimal(1000), "unit": "ug"}


def test_dose_above_label_fires_on_order() -> None:
    assert run_order(dose_above_label, make_order(dose=Decimal(1500))) == [
        Finding(detail={"dose": Decimal(1500), "max": Decimal(1000), "unit": "ug"})
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"drug": METHYLCOBALAMIN, "dose": Decimal(5000)},
        {"drug": None, "drug_coded": False, "dose": Decimal(5000)},
        {"dose": None},
        {"dose": Decimal(5000), "status": "stopped"},
    ],
    ids=["no-max-configured", "unknown-drug", "no-dose", "not-completed"],
)
def test_dose_above_label_silent(overrides: dict[str, Any]) -> None:
    assert run(dose_above_label, make_injection(**overrides)) == []


# drug-uncoded


@pytest.mark.parametrize("drug", [B12, None], ids=["matched-by-name", "unmatched"])
def test_drug_uncoded_fires_with_text(drug: Any) -> None:
    inj = make_injection(drug=drug, drug_coded=False, drug_text="B12 shot")
    assert run(drug_uncoded, inj) == [Finding(detail={"text": "B12 shot"})]


def test_drug_uncoded_without_text() -> None:
    inj = make_injection(drug=None, drug_coded=False, drug_text=None)
    assert run(drug_uncoded, inj) == [Finding(detail={"text": None})]


def test_drug_uncoded_silent_when_coded() -> None:
    assert run(drug_uncoded, make_injection(drug_coded=True, drug_text="B12 shot")) == []


@pytest.mark.parametrize("status", NOT_COMPLETED)
def test_drug_uncoded_ignores_admin_not_completed(status: str) -> None:
    assert run(drug_uncoded, make_injection(status=status, drug_coded=False)) == []


# admin-time-missing


def test_admin_time_missing_fires_on_untimed_administration() -> None:
    assert run(admin_time_missing, make_injection(at=None, timed=False)) == [Finding()]


def test_admin_time_missing_fires_on_date_only_administration() -> None:
    assert run(admin_time_missing, make_injection(timed=False)) == [Finding()]


@pytest.mark.parametrize("status", ["draft", "active"])
def test_admin_time_missing_never_for_orders(status: str) -> None:
    assert run_order(admin_time_missing, make_order(status=status, timed=False)) == []


@pytest.mark.parametrize("status", NOT_COMPLETED)
def test_admin_time_missing_ignores_admin_not_completed(status: str) -> None:
    assert run(admin_time_missing, make_injection(status=status, timed=False)) == []


# dos-mismatch


@pytest.mark.parametrize("admin_date", [DAY_BEFORE, DAY_AFTER])
def test_dos_mismatch_against_encounter(admin_date: dt.date) -> None:
    inj = make_injection(date_of_service=admin_date)
    assert run(dos_mismatch, inj) == [
        Finding(detail={"admin_date": admin_date, "other_date": DOS, "against": "encounter"})
    ]


def test_dos_mismatch_against_charge_resting_on_admin() -> None:
    inj = make_injection()
    charge = ChargeLine("J3420", "hcpcs", date_of_service=DAY_AFTER, service=(inj.ref,))
    assert run(dos_mismatch, inj, make_visit(inj, charges=(charge,))) == [
        Finding(detail={"admin_date": DOS, "other_date": DAY_AFTER, "against": "charge J3420"})
    ]


def test_dos_mismatch_reports_first_mismatched_charge_only() -> None:
    inj = make_injection()
    charges = (
        ChargeLine("96372", "cpt", date_of_service=DOS, service=(inj.ref,)),
        ChargeLine("J3420", "hcpcs", date_of_service=DAY_BEFORE, service=("MedicationAdministration/x", inj.ref)),
        ChargeLine("96372", "cpt", date_of_service=DAY_AFTER, service=(inj.ref,)),
    )
    assert run(dos_mismatch, inj, make_visit(inj, charges=charges)) == [
        Finding(detail={"admin_date": DOS, "other_date": DAY_BEFORE, "against": "charge J3420"})
    ]


def test_dos_mismatch_against_charge_when_encounter_has_no_date() -> None:
    inj = make_injection()
    charge = ChargeLine("96372", "cpt", date_of_service=DAY_BEFORE, service=(inj.ref,))
    assert run(dos_mismatch, inj, make_visit(inj, date_of_service=None, charges=(charge,))) == [
        Finding(detail={"admin_date": DOS, "other_date": DAY_BEFORE, "against": "charge 96372"})
    ]


def test_dos_mismatch_encounter_reported_once_even_if_charge_differs_too() -> None:
    inj = make_injection(date_of_service=DAY_BEFORE)
    charge = ChargeLine("J3420", "hcpcs", date_of_service=DAY_AFTER, service=(inj.ref,))
    assert run(dos_mismatch, inj, make_visit(inj, charges=(charge,))) == [
        Finding(detail={"admin_date": DAY_BEFORE, "other_date": DOS, "against": "encounter"})
    ]


@pytest.mark.parametrize(
    "charge",
    [
        ChargeLine("J3420", "hcpcs", date_of_service=DOS, service=(ADMIN_REF,)),
        ChargeLine("J3420", "hcpcs", date_of_service=None, service=(ADMIN_REF,)),
        ChargeLine("J3420", "hcpcs", date_of_service=DAY_AFTER, service=("MedicationAdministration/other",)),
        ChargeLine("J3420", "hcpcs", date_of_service=DAY_AFTER),
    ],
    ids=["same-date", "charge-undated", "other-admin", "no-service-ref"],
)
def test_dos_mismatch_silent_when_dates_agree_or_charge_is_elsewhere(charge: ChargeLine) -> None:
    inj = make_injection()
    assert run(dos_mismatch, inj, make_visit(inj, charges=(charge,))) == []


def test_dos_mismatch_silent_without_admin_date() -> None:
    inj = make_injection(date_of_service=None)
    charge = ChargeLine("J3420", "hcpcs", date_of_service=DAY_AFTER, service=(inj.ref,))
    assert run(dos_mismatch, inj, make_visit(inj, charges=(charge,))) == []


def test_dos_mismatch_silent_without_encounter_date_or_charges() -> None:
    inj = make_injection(date_of_service=DAY_BEFORE)
    assert run(dos_mismatch, inj, make_visit(inj, date_of_service=None)) == []


def test_dos_mismatch_never_for_orders() -> None:
    order = make_order(date_of_service=DAY_BEFORE)
    charge = ChargeLine("J3420", "hcpcs", date_of_service=DAY_AFTER, service=(order.ref,))
    assert run(dos_mismatch, order, make_visit(order, hook_kind="order-sign", charges=(charge,))) == []


# performer-missing


def test_performer_missing_fires_on_administration() -> None:
    assert run(performer_missing, make_injection(performer=False)) == [Finding()]


def test_performer_missing_never_for_orders() -> None:
    assert run_order(performer_missing, make_order(performer=False)) == []


@pytest.mark.parametrize("status", NOT_COMPLETED)
def test_performer_missing_ignores_admin_not_completed(status: str) -> None:
    assert run(performer_missing, make_injection(status=status, performer=False)) == []


# status-not-completed


@pytest.mark.parametrize("status", NOT_COMPLETED)
def test_status_not_completed_fires_with_status(status: str) -> None:
    assert run(status_not_completed, make_injection(status=status)) == [Finding(detail={"status": status})]


@pytest.mark.parametrize("status", ["completed", "entered-in-error"])
def test_status_not_completed_silent(status: str) -> None:
    assert run(status_not_completed, make_injection(status=status)) == []


@pytest.mark.parametrize("status", ["draft", "active", "on-hold", "stopped", "unknown"])
def test_status_not_completed_never_for_orders(status: str) -> None:
    assert run_order(status_not_completed, make_order(status=status)) == []


# patient-supplied-drug


def test_patient_supplied_drug_fires() -> None:
    assert run(patient_supplied_drug, make_injection(patient_supplied=True)) == [Finding()]


def test_patient_supplied_drug_fires_on_order() -> None:
    assert run_order(patient_supplied_drug, make_order(patient_supplied=True)) == [Finding()]


@pytest.mark.parametrize(("supplied", "status"), [(False, "completed"), (True, "not-done"), (True, "in-progress")])
def test_patient_supplied_drug_silent(supplied: bool, status: str) -> None:
    assert run(patient_supplied_drug, make_injection(patient_supplied=supplied, status=status)) == []


# noc-drug-code


def test_noc_drug_code_fires_with_code_and_ndc() -> None:
    inj = make_injection(drug=HYDROXOCOBALAMIN, ndc="12345-6789-01")
    assert run(noc_drug_code, inj, make_visit(inj, policy=NOC_POLICY)) == [
        Finding(detail={"code": "J3490", "ndc": "12345-6789-01"})
    ]


def test_noc_drug_code_without_ndc_still_fires() -> None:
    inj = make_injection(drug=METHYLCOBALAMIN, ndc=None)
    assert run(noc_drug_code, inj, make_visit(inj, policy=NOC_POLICY)) == [
        Finding(detail={"code": "J3490", "ndc": None})
    ]


@pytest.mark.parametrize(
    ("overrides", "policy"),
    [
        ({"drug": B12}, NOC_POLICY),
        ({"drug": HYDROXOCOBALAMIN}, BillingPolicy()),
        ({"drug": None, "drug_coded": False}, NOC_POLICY),
        ({"drug": HYDROXOCOBALAMIN, "status": "not-done"}, NOC_POLICY),
    ],
    ids=["specific-code", "policy-without-noc", "unknown-drug", "not-completed"],
)
def test_noc_drug_code_silent(overrides: dict[str, Any], policy: BillingPolicy) -> None:
    inj = make_injection(**overrides)
    assert run(noc_drug_code, inj, make_visit(inj, policy=policy)) == []


# compounded-drug


def test_compounded_drug_fires() -> None:
    assert run(compounded_drug, make_injection(drug=METHYLCOBALAMIN)) == [Finding()]


@pytest.mark.parametrize(
    "overrides",
    [
        {"drug": B12},
        {"drug": HYDROXOCOBALAMIN},
        {"drug": None, "drug_coded": False},
        {"drug": METHYLCOBALAMIN, "status": "stopped"},
    ],
    ids=["b12", "hydroxocobalamin", "unknown-drug", "not-completed"],
)
def test_compounded_drug_silent(overrides: dict[str, Any]) -> None:
    assert run(compounded_drug, make_injection(**overrides)) == []


# self-administered-drug


def test_self_administered_drug_fires_with_payer_display() -> None:
    inj = make_injection()
    payer = make_payer(display="Medicare Part B (test MAC)", self_administered=frozenset({"cyanocobalamin"}))
    assert run(self_administered_drug, inj, make_visit(inj, payer=payer)) == [
        Finding(detail={"payer": "Medicare Part B (test MAC)"})
    ]


@pytest.mark.parametrize(
    ("overrides", "payer"),
    [
        ({}, None),
        ({}, make_payer()),
        ({}, make_payer(self_administered=frozenset({"hydroxocobalamin"}))),
        ({"drug": None, "drug_coded": False}, make_payer(self_administered=frozenset({"cyanocobalamin"}))),
        ({"status": "not-done"}, make_payer(self_administered=frozenset({"cyanocobalamin"}))),
    ],
    ids=["no-payer", "empty-list", "other-drug-listed", "unknown-drug", "not-completed"],
)
def test_self_administered_drug_silent(overrides: dict[str, Any], payer: Any) -> None:
    inj = make_injection(**overrides)
    assert run(self_administered_drug, inj, make_visit(inj, payer=payer)) == []


# the registry and evaluate()

TRIGGERS: dict[str, tuple[Rule, dict[str, Any], dict[str, Any]]] = {
    "route-missing": (route_missing, {"route": RouteClass.UNKNOWN, "route_coded": False}, {}),
    "route-uncoded": (route_uncoded, {"route_coded": False}, {}),
    "route-contrary-to-label": (route_contrary_to_label, {"route": RouteClass.IV_PUSH}, {}),
    "dose-missing": (dose_missing, {"dose": None, "dose_documented": False}, {}),
    "dose-above-label": (dose_above_label, {"dose": Decimal(1001)}, {}),
    "drug-uncoded": (drug_uncoded, {"drug_coded": False}, {}),
    "admin-time-missing": (admin_time_missing, {"timed": False}, {}),
    "dos-mismatch": (dos_mismatch, {"date_of_service": DAY_BEFORE}, {}),
    "performer-missing": (performer_missing, {"performer": False}, {}),
    "status-not-completed": (status_not_completed, {"status": "on-hold"}, {}),
    "patient-supplied-drug": (patient_supplied_drug, {"patient_supplied": True}, {}),
    "noc-drug-code": (noc_drug_code, {"drug": HYDROXOCOBALAMIN}, {"policy": NOC_POLICY}),
    "compounded-drug": (compounded_drug, {"drug": METHYLCOBALAMIN}, {}),
    "self-administered-drug": (
        self_administered_drug, {}, {"payer": make_payer(self_administered=frozenset({"cyanocobalamin"}))},
    ),
    "drug-unknown": (drug_unknown, {"drug": None, "drug_coded": True, "drug_text": "Unobtainium 5 mg"}, {}),
}


def test_every_documentation_function_is_registered_and_covered() -> None:
    assert {rule_id: RULES[rule_id].check for rule_id in TRIGGERS} == {rule_id: t[0] for rule_id, t in TRIGGERS.items()}
    public = {
        name for name, value in vars(documentation).items()
        if callable(value) and getattr(value, "__module__", None) == documentation.__name__
    }
    assert public == {fn.__name__ for fn in ALL_RULES}


@pytest.mark.parametrize("rule_id", list(TRIGGERS))
def test_evaluate_labels_finding_with_rule_id_and_subject(rule_id: str) -> None:
    rule, inj_overrides, visit_overrides = TRIGGERS[rule_id]
    clean = make_injection(ref="MedicationAdministration/clean", drug=KETOROLAC)
    faulty = make_injection(ref="MedicationAdministration/faulty", **inj_overrides)
    visit = make_visit(clean, faulty, **visit_overrides)
    findings = list(evaluate(visit, {rule_id: {}}))
    assert [(f.rule, f.subject) for f in findings] == [(rule_id, "MedicationAdministration/faulty")]
    assert [f.detail for f in findings] == [f.detail for f in rule(faulty, visit)]


# drug-unknown


def test_drug_unknown_says_which_administration_code_the_route_gave() -> None:
    inj = make_injection(drug=None, drug_coded=True, drug_text="Unobtainium 5 mg", ndc="12345-6789-01")
    assert run(drug_unknown, inj) == [Finding(detail={
        "text": "Unobtainium 5 mg", "ndc": "12345-6789-01", "assumed": "96372", "candidates": [], "vaccine": False})]


def test_drug_unknown_lists_the_codes_a_name_left_open() -> None:
    inj = make_injection(drug=None, drug_coded=False, drug_text="methylprednisolone 40 mg",
                         drug_candidates=("J1010", "J2919"))
    [finding] = run(drug_unknown, inj)
    assert finding.detail["candidates"] == ["J1010", "J2919"]


def test_an_unknown_vaccine_assumes_the_vaccine_administration_code() -> None:
    inj = make_injection(drug=None, drug_coded=True, drug_text=None, vaccine=True)
    visit = make_visit(inj, policy=BillingPolicy(admin_codes={"vaccine": "90471"}))
    [finding] = run(drug_unknown, inj, visit)
    assert finding.detail["assumed"] == "90471" and finding.detail["vaccine"] is True


@pytest.mark.parametrize("overrides", [
    {"drug_coded": False, "drug_text": None},  # nothing named at all: drug-uncoded's
    {"route": RouteClass.ORAL, "route_coded": True},  # an oral dose: nothing to bill
    {"patient_supplied": True},  # no drug line either way
    {"status": "not-done"},
])
def test_no_drug_unknown(overrides: dict[str, Any]) -> None:
    inj = make_injection(**{"drug": None, "drug_coded": True, "drug_text": "Unobtainium", **overrides})
    assert run(drug_unknown, inj) == []
