"""The billing plan (rules/plan.py): the administration and drug lines each injection should carry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import pytest

from cds_service.rules.model import Drug, Injection, PayerProfile, PlannedLines, RouteClass, Setting
from cds_service.rules.plan import plan
from tests.unit.test_rules_billing import (
    B12,
    CEFTRIAXONE,
    COMMERCIAL,
    FLU,
    HEP_B,
    KETOROLAC,
    LEUPROLIDE,
    MEDICARE,
    METHOTREXATE,
    NINE,
    PAYER_59,
    PNEUMO,
    REF1,
    REF2,
    TDAP,
    TEN,
    cpt,
    hcpcs,
    make_injection,
    make_visit,
    planned_visit,
)

REF3 = "MedicationAdministration/ma-3"
ELEVEN = dt.datetime(2025, 3, 4, 11, 0)


def planned(*injections: Injection, **overrides: object) -> Mapping[str, PlannedLines]:
    return planned_visit(*injections, **overrides).plan


def admin_codes(lines: Mapping[str, PlannedLines]) -> dict[str, str | None]:
    return {ref: p.admin.code if p.admin else None for ref, p in lines.items()}


def push(ref: str = REF1, **overrides: object) -> Injection:
    return make_injection(ref=ref, route=RouteClass.IV_PUSH, **overrides)


def test_prepare_fills_in_what_plan_returns() -> None:
    visit = make_visit(make_injection(), policy=planned_visit().policy)
    assert planned_visit(make_injection()).plan == plan(visit)


@pytest.mark.parametrize(("mcg", "units"), [(100, 1), (1000, 1), (1500, 2), (2000, 2)])
def test_im_b12_carries_96372_and_j3420_units(mcg: int, units: int) -> None:
    lines = planned(make_injection(dose=Decimal(mcg)))
    assert lines == {REF1: PlannedLines(admin=cpt("96372"), drug=hcpcs("J3420", units=units))}


def test_iv_push_is_96374() -> None:
    assert planned(push()) == {REF1: PlannedLines(admin=cpt("96374"), drug=hcpcs("J3420"))}


def test_a_further_push_of_a_new_drug_is_96375() -> None:
    lines = planned(push(at=NINE), push(REF2, drug=KETOROLAC, dose=Decimal(30), at=TEN))
    assert lines[REF1].admin == cpt("96374")
    assert lines[REF2] == PlannedLines(admin=cpt("96375", REF2), drug=hcpcs("J1885", REF2, units=2))


def test_a_repeat_push_of_the_same_drug_has_no_admin_line() -> None:
    lines = planned(push(at=NINE), push(REF2, at=TEN))
    assert admin_codes(lines) == {REF1: "96374", REF2: None}
    assert lines[REF2].drug == hcpcs("J3420", REF2)


@pytest.mark.parametrize("push_at", [NINE, ELEVEN], ids=["push-before", "push-after"])
def test_an_infusion_is_initial_and_makes_pushes_96375(push_at: dt.datetime) -> None:
    infusion = make_injection(ref=REF2, drug=CEFTRIAXONE, dose=Decimal(1000), route=RouteClass.IV_INFUSION, at=TEN)
    lines = planned(push(at=push_at), infusion)
    assert lines[REF1].admin == cpt("96375")
    assert lines[REF2] == PlannedLines(admin=cpt("96365", REF2), drug=hcpcs("J0696", REF2, units=4))


def test_a_not_done_infusion_does_not_make_pushes_additional() -> None:
    infusion = make_injection(ref=REF2, drug=CEFTRIAXONE, route=RouteClass.IV_INFUSION, status="not-done", at=NINE)
    assert admin_codes(planned(push(at=TEN), infusion)) == {REF1: "96374", REF2: None}


def test_intra_arterial_is_96373() -> None:
    assert planned(make_injection(route=RouteClass.INTRA_ARTERIAL))[REF1].admin == cpt("96373")


@pytest.mark.parametrize("route", [RouteClass.ORAL, RouteClass.OTHER, RouteClass.UNKNOWN])
def test_routes_without_an_admin_code(route: RouteClass) -> None:
    assert planned(make_injection(route=route))[REF1].admin is None


@pytest.mark.parametrize(("drug", "code"), [(FLU, "G0008"), (PNEUMO, "G0009"), (HEP_B, "G0010")])
def test_medicare_vaccines_take_g_codes(drug: Drug, code: str) -> None:
    inj = make_injection(drug=drug, dose=Decimal("0.5"), container="single-dose")
    lines = planned(inj, payer=MEDICARE)
    assert lines[REF1].admin == hcpcs(code)
    assert lines[REF1].drug is not None and lines[REF1].drug.modifiers == ()  # a vaccine never takes JZ


def test_flu_vaccine_lines_under_medicare() -> None:
    lines = planned(make_injection(drug=FLU, dose=Decimal("0.5")), payer=MEDICARE)
    assert lines == {REF1: PlannedLines(admin=hcpcs("G0008"), drug=cpt("90686"))}


def test_commercial_vaccines_are_90471_then_90472() -> None:
    flu = make_injection(drug=FLU, dose=Decimal("0.5"), at=NINE)
    pneumo = make_injection(ref=REF2, drug=PNEUMO, dose=Decimal("0.5"), at=TEN)
    lines = planned(pneumo, flu, payer=COMMERCIAL)
    assert lines == {
        REF1: PlannedLines(admin=cpt("90471"), drug=cpt("90686")),
        REF2: PlannedLines(admin=cpt("90472", REF2), drug=cpt("90732", REF2)),
    }


def test_vaccines_never_take_96372_nor_count_as_injections() -> None:
    flu = make_injection(drug=FLU, dose=Decimal("0.5"), at=NINE)
    b12 = make_injection(ref=REF2, at=TEN)
    assert admin_codes(planned(flu, b12, payer=PAYER_59)) == {REF1: "90471", REF2: "96372"}
    assert planned(flu, b12, payer=PAYER_59)[REF2].admin == cpt("96372", REF2)


def test_medicare_vaccine_beside_a_g_code_is_90471_whatever_the_order() -> None:
    flu = make_injection(drug=FLU, dose=Decimal("0.5"), at=NINE)
    tdap = make_injection(ref=REF2, drug=TDAP, dose=Decimal("0.5"), at=TEN)
    assert admin_codes(planned(flu, tdap, payer=MEDICARE)) == {REF1: "G0008", REF2: "90471"}


def test_leuprolide_sc_is_96402_and_methotrexate_96401() -> None:
    leuprolide = make_injection(drug=LEUPROLIDE, route=RouteClass.SC, dose=Decimal("7.5"))
    assert planned(leuprolide) == {REF1: PlannedLines(admin=cpt("96402"), drug=hcpcs("J9217"))}
    methotrexate = make_injection(drug=METHOTREXATE, dose=Decimal(25))
    assert planned(methotrexate) == {REF1: PlannedLines(admin=cpt("96401"), drug=hcpcs("J9250", units=5))}


def test_facility_setting_plans_no_lines() -> None:
    lines = planned(make_injection(), push(REF2, drug=KETOROLAC, dose=Decimal(15)), setting=Setting.FACILITY)
    assert lines == {REF1: PlannedLines(), REF2: PlannedLines()}


@pytest.mark.parametrize("status", ["not-done", "in-progress", "on-hold", "stopped", "unknown", "entered-in-error"])
def test_not_completed_plans_no_lines(status: str) -> None:
    assert planned(make_injection(status=status)) == {REF1: PlannedLines()}


def test_self_administered_drug_plans_no_lines() -> None:
    payer = PayerProfile(key="sad", display="SAD list", self_administered=frozenset({B12.key}))
    ketorolac = make_injection(ref=REF2, drug=KETOROLAC, dose=Decimal(15))
    lines = planned(make_injection(), ketorolac, payer=payer)
    assert lines == {REF1: PlannedLines(), REF2: PlannedLines(admin=cpt("96372", REF2), drug=hcpcs("J1885", REF2))}


def test_patient_supplied_drug_bills_the_admin_only() -> None:
    assert planned(make_injection(patient_supplied=True)) == {REF1: PlannedLines(admin=cpt("96372"))}


def test_medicare_single_dose_drug_line_carries_jz() -> None:
    lines = planned(make_injection(container="single-dose"), payer=MEDICARE)
    assert lines[REF1] == PlannedLines(admin=cpt("96372"), drug=hcpcs("J3420", modifiers=("JZ",)))


@pytest.mark.parametrize(
    ("container", "payer"),
    [("multi-dose", MEDICARE), (None, MEDICARE), ("single-dose", COMMERCIAL), ("single-dose", None)],
)
def test_no_jz_otherwise(container: str | None, payer: PayerProfile | None) -> None:
    assert planned(make_injection(container=container), payer=payer)[REF1].drug == hcpcs("J3420")


def test_payer_modifier_goes_on_the_second_96372_of_the_day() -> None:
    first = make_injection(at=NINE)
    second = make_injection(ref=REF2, route=RouteClass.SC, drug=KETOROLAC, dose=Decimal(15), at=TEN)
    lines = planned(second, first, payer=PAYER_59)
    assert lines[REF1].admin == cpt("96372")
    assert lines[REF2].admin == cpt("96372", REF2, modifiers=("59",))
    assert lines[REF2].drug == hcpcs("J1885", REF2)


def test_no_modifier_without_the_payer_asking_or_on_another_day() -> None:
    first = make_injection(at=NINE)
    second = make_injection(ref=REF2, at=TEN)
    assert {p.admin.modifiers for p in planned(first, second, payer=COMMERCIAL).values() if p.admin} == {()}
    next_day = make_injection(ref=REF2, at=TEN + dt.timedelta(days=1), date_of_service=dt.date(2025, 3, 5))
    assert {p.admin.modifiers for p in planned(first, next_day, payer=PAYER_59).values() if p.admin} == {()}


def test_sequence_follows_administration_time_not_listing_order() -> None:
    early = push(REF2, drug=KETOROLAC, dose=Decimal(15), at=NINE)
    late = push(REF1, at=TEN)
    assert admin_codes(planned(late, early)) == {REF1: "96375", REF2: "96374"}
    untimed = make_injection(ref=REF3, at=None)
    lines = planned(untimed, make_injection(ref=REF2, at=TEN), payer=PAYER_59)
    assert lines[REF2].admin == cpt("96372", REF2)  # an admin without a time comes last
    assert lines[REF3].admin == cpt("96372", REF3, modifiers=("59",))


def test_sequence_compares_instants_across_offsets() -> None:
    est = dt.timezone(dt.timedelta(hours=-5))
    first = push(REF2, drug=KETOROLAC, dose=Decimal(15), at=dt.datetime(2025, 3, 4, 13, 0, tzinfo=dt.UTC))
    second = push(REF1, at=dt.datetime(2025, 3, 4, 9, 0, tzinfo=est))  # 14:00 UTC
    assert admin_codes(planned(second, first)) == {REF1: "96375", REF2: "96374"}
