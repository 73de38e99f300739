"""Charges already captured on the encounter (rules/charges.py), one rule at a time, on tiny facts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from msgspec.structs import replace

from cds_service.rules.billing import admin_96372
from cds_service.rules.charges import (
    charge_code_mismatch,
    charge_units_mismatch,
    charge_unsupported,
    code_not_current,
    em_99211_bundled,
    facility_setting,
    same_day_em_modifier_25,
)
from cds_service.rules.model import ChargeLine, Finding, RouteClass, Setting
from tests.unit.test_rules_billing import (
    DOS,
    FLU,
    KETOROLAC,
    MEDICARE,
    NINE,
    REF1,
    REF2,
    TEN,
    captured_line,
    make_injection,
    planned_visit,
)

OTHER_DAY = dt.date(2025, 3, 5)
GONE = "MedicationAdministration/ma-9"


def em(code: str = "99213", charge_id: str | None = "em-1", **overrides: object) -> ChargeLine:
    """A captured E/M line: dated, resting on no admin."""
    return captured_line(code, charge_id, None, **overrides)


# same-day-em-modifier-25


def test_em_beside_a_planned_96372_gets_25() -> None:
    line = em()
    visit = planned_visit(make_injection(), charges=(line,))
    assert list(same_day_em_modifier_25(visit)) == [
        Finding(updates=(replace(line, modifiers=("25",), service=(REF1,)),),
                detail={"code": "99213", "beside": ["96372"]})
    ]


def test_em_beside_a_captured_96372_gets_25() -> None:
    line = em("99214")
    visit = planned_visit(charges=(line, captured_line("96372", "ci-1", REF2)))
    (finding,) = same_day_em_modifier_25(visit)
    assert finding.updates == (replace(line, modifiers=("25",), service=(REF2,)),)
    assert finding.updates[0].id == "em-1"
    assert (finding.creates, finding.deletes) == ((), ())


def test_em_beside_two_admins_names_both() -> None:
    line = em()
    second = make_injection(ref=REF2, route=RouteClass.IV_PUSH, drug=KETOROLAC, dose=Decimal(15), at=TEN)
    (finding,) = same_day_em_modifier_25(planned_visit(make_injection(at=NINE), second, charges=(line,)))
    assert finding.updates == (replace(line, modifiers=("25",), service=(REF1, REF2)),)
    assert finding.detail == {"code": "99213", "beside": ["96372", "96374"]}


@pytest.mark.parametrize(
    "line",
    [em(modifiers=("25",)), em(date_of_service=OTHER_DAY), em("99211"), em("99213", charge_id=None)],
    ids=["has-25", "other-day", "99211-not-in-list", "no-id"],
)
def test_em_needs_no_25(line: ChargeLine) -> None:
    assert list(same_day_em_modifier_25(planned_visit(make_injection(), charges=(line,)))) == []


def test_em_without_any_admin_needs_no_25() -> None:
    assert list(same_day_em_modifier_25(planned_visit(make_injection(status="not-done"), charges=(em(),)))) == []


# em-99211-bundled


def test_99211_beside_an_admin_is_deleted() -> None:
    visit = planned_visit(make_injection(), charges=(em("99211", "em-11"),))
    assert list(em_99211_bundled(visit)) == [Finding(deletes=("em-11",), detail={"code": "99211"})]


def test_99211_beside_a_captured_admin_code_is_deleted() -> None:
    visit = planned_visit(charges=(em("99211", "em-11"), captured_line("96374", "ci-1", REF2)))
    assert [f.deletes for f in em_99211_bundled(visit)] == [("em-11",)]


@pytest.mark.parametrize(
    "line", [em("99211", date_of_service=OTHER_DAY), em("99213")], ids=["other-day", "not-bundled"]
)
def test_99211_alone_or_other_em_is_kept(line: ChargeLine) -> None:
    assert list(em_99211_bundled(planned_visit(make_injection(), charges=(line,)))) == []
    assert list(em_99211_bundled(planned_visit(charges=(em("99211"),)))) == []


# facility-setting


def test_facility_with_a_completed_injection() -> None:
    visit = planned_visit(make_injection(), make_injection(ref=REF2), setting=Setting.FACILITY)
    assert list(facility_setting(visit)) == [Finding()]


def test_no_facility_finding_outside_a_facility_or_without_a_given_drug() -> None:
    assert list(facility_setting(planned_visit(make_injection()))) == []
    assert list(facility_setting(planned_visit(make_injection(), setting=Setting.UNKNOWN))) == []
    not_done = planned_visit(make_injection(status="not-done"), setting=Setting.FACILITY)
    assert list(facility_setting(not_done)) == []


# charge-code-mismatch


def test_96372_on_an_iv_push_becomes_96374() -> None:
    inj = make_injection(route=RouteClass.IV_PUSH)
    line = captured_line("96372", "ci-1")
    assert list(charge_code_mismatch(inj, planned_visit(inj, charges=(line,)))) == [
        Finding(updates=(replace(line, code="96374"),), detail={"captured": "96372", "code": "96374"})
    ]


def test_96374_on_an_im_injection_becomes_96372() -> None:
    inj = make_injection()
    line = captured_line("96374", "ci-1")
    (finding,) = charge_code_mismatch(inj, planned_visit(inj, charges=(line,)))
    assert finding.updates == (ChargeLine("96372", "cpt", Decimal(1), (), DOS, "ci-1", (REF1,)),)


def test_96372_on_a_medicare_flu_vaccine_becomes_g0008() -> None:
    inj = make_injection(drug=FLU, dose=Decimal("0.5"))
    line = captured_line("96372", "ci-1")
    (finding,) = charge_code_mismatch(inj, planned_visit(inj, payer=MEDICARE, charges=(line,)))
    assert finding.updates == (ChargeLine("G0008", "hcpcs", Decimal(1), (), DOS, "ci-1", (REF1,)),)


def test_matching_code_or_another_admins_line_is_no_mismatch() -> None:
    inj = make_injection(route=RouteClass.IV_PUSH)
    assert list(charge_code_mismatch(inj, planned_visit(inj, charges=(captured_line("96374", "ci-1"),)))) == []
    elsewhere = captured_line("96372", "ci-1", GONE)
    assert list(charge_code_mismatch(inj, planned_visit(inj, charges=(elsewhere,)))) == []


def test_undirected_line_is_matched_only_to_the_days_sole_injection() -> None:
    push = make_injection(route=RouteClass.IV_PUSH, at=NINE)
    line = captured_line("96372", "ci-1", None)
    (finding,) = charge_code_mismatch(push, planned_visit(push, charges=(line,)))
    assert finding.updates == (replace(line, code="96374", service=(push.ref,)),)  # the update names its admin
    im = make_injection(ref=REF2, drug=KETOROLAC, dose=Decimal(15), at=TEN)
    visit = planned_visit(push, im, charges=(line,))
    assert list(charge_code_mismatch(push, visit)) == []
    assert list(charge_code_mismatch(im, visit)) == []


# charge-units-mismatch


def test_j3420_units_follow_the_dose() -> None:
    inj = make_injection(dose=Decimal(2000))
    line = captured_line("J3420", "ci-2")
    assert list(charge_units_mismatch(inj, planned_visit(inj, charges=(line,)))) == [
        Finding(updates=(replace(line, units=Decimal(2)),),
                detail={"captured": Decimal(1), "units": Decimal(2), "code": "J3420"})
    ]


def test_right_units_are_no_mismatch() -> None:
    inj = make_injection(dose=Decimal(2000))
    line = captured_line("J3420", "ci-2", units=Decimal(2))
    assert list(charge_units_mismatch(inj, planned_visit(inj, charges=(line,)))) == []


# charge-unsupported


@pytest.mark.parametrize("code", ["96372", "J3420"])
@pytest.mark.parametrize("status", [None, "not-done", "entered-in-error", "in-progress"])
def test_line_without_a_completed_admin_is_deleted(code: str, status: str | None) -> None:
    injections = (make_injection(ref=GONE, status=status),) if status else ()
    visit = planned_visit(make_injection(ref=REF2), *injections, charges=(captured_line(code, "ci-1", GONE),))
    assert list(charge_unsupported(visit)) == [Finding(deletes=("ci-1",), detail={"code": code, "service": [GONE]})]


@pytest.mark.parametrize("code", ["96372", "J3420"])
def test_line_resting_on_a_completed_admin_is_kept(code: str) -> None:
    visit = planned_visit(make_injection(), charges=(captured_line(code, "ci-1"),))
    assert list(charge_unsupported(visit)) == []
    undirected = planned_visit(make_injection(), charges=(captured_line(code, "ci-1", None),))
    assert list(charge_unsupported(undirected)) == []


def test_drug_line_for_a_drug_not_given_that_day_is_deleted() -> None:
    ketorolac = make_injection(drug=KETOROLAC, dose=Decimal(15))
    visit = planned_visit(ketorolac, charges=(captured_line("J3420", "ci-2", None),))
    assert list(charge_unsupported(visit)) == [Finding(deletes=("ci-2",), detail={"code": "J3420", "service": []})]


def test_em_lines_are_never_unsupported() -> None:
    visit = planned_visit(make_injection(status="not-done"), charges=(em("99213"), em("99211", "em-11")))
    assert list(charge_unsupported(visit)) == []


def test_captured_96372_on_an_oral_admin_is_deleted() -> None:
    """No administration code applies to an oral dose: a captured 96372 on it is removed."""
    from cds_service.rules.charges import charge_code_mismatch
    from cds_service.rules.model import ChargeLine, RouteClass
    from cds_service.rules.plan import prepare
    from tests.unit.test_rules_billing import POLICY, make_injection, make_visit

    oral = make_injection(route=RouteClass.ORAL)
    line = ChargeLine("96372", "cpt", id="c-oral", service=(oral.ref,))
    visit = prepare(make_visit(oral, charges=(line,), policy=POLICY))
    (finding,) = charge_code_mismatch(oral, visit)
    assert (finding.deletes, finding.updates, finding.detail["code"]) == (("c-oral",), (), None)


# code-not-current


def stale(code: str, charge_id: str = "ci-drug", ref: str | None = REF1, current: tuple[str, ...] = (),
          units: int = 1, why: str = "dropped") -> ChargeLine:
    """A captured drug line whose code is not in force on its date (facts marks it from CMS's files)."""
    return captured_line(code, charge_id, ref, units=Decimal(units), drug=True, stale=why, current=current,
                         quarter="2025q1")


def detail(captured: str, code: str | None, units: int | None, successors: list[str], state: str,
           why: str = "dropped") -> dict[str, object]:
    return {"captured": captured, "code": code, "units": None if units is None else Decimal(units),
            "successors": successors, "why": why, "quarter": "2025q1", "state": state}


def test_a_stale_drug_line_is_updated_to_the_planned_code_and_units() -> None:
    inj = make_injection(drug=KETOROLAC, dose=Decimal(60))  # J1885 x4
    line = stale("J1880", current=("J1885",))
    visit = planned_visit(inj, charges=(captured_line("96372", "ci-96372"), line))
    assert list(code_not_current(inj, visit)) == [Finding(
        updates=(replace(line, code="J1885", units=Decimal(4)),),
        detail=detail("J1880", "J1885", 4, ["J1885"], "replace"),
    )]
    assert list(admin_96372(inj, visit)) == []  # the stale line is the drug line: nothing to create
    assert list(charge_unsupported(visit)) == []  # and it has its administration behind it


def test_a_code_not_listed_yet_is_updated_to_the_code_then_in_force() -> None:
    inj = make_injection(drug=KETOROLAC, dose=Decimal(30))
    line = stale("J1886", current=("J1885",), why="not-yet")
    [finding] = code_not_current(inj, planned_visit(inj, charges=(line,)))
    assert finding.updates[0].code == "J1885" and finding.detail["why"] == "not-yet"


def test_a_stale_line_alone_on_the_date_rests_on_the_one_admin() -> None:
    inj = make_injection(drug=KETOROLAC, dose=Decimal(30))
    line = stale("J1880", ref=None, current=("J1885",))
    (finding,) = code_not_current(inj, planned_visit(inj, charges=(line,)))
    assert finding.updates == (replace(line, code="J1885", units=Decimal(2), service=(REF1,)),)


def test_a_second_stale_line_or_one_beside_the_code_in_force_is_removed() -> None:
    inj = make_injection(drug=KETOROLAC, dose=Decimal(30))
    first, second = stale("J1880", "ci-a", current=("J1885",)), stale("J1881", "ci-b", current=("J1885",))
    findings = list(code_not_current(inj, planned_visit(inj, charges=(first, second))))
    assert [bool(f.updates) for f in findings] == [True, False] and findings[1].deletes == ("ci-b",)
    beside = (captured_line("J1885", "ci-now", units=Decimal(2)), stale("J1880", current=("J1885",)))
    [duplicate] = code_not_current(inj, planned_visit(inj, charges=beside))
    assert duplicate.deletes == ("ci-drug",) and duplicate.detail["state"] == "duplicate"


def test_a_stale_line_of_another_drug_is_not_this_admins_and_goes_as_unsupported() -> None:
    inj = make_injection(drug=KETOROLAC, dose=Decimal(30))
    visit = planned_visit(inj, charges=(stale("J1040", current=("J1010",)),))
    assert list(code_not_current(inj, visit)) == []
    assert list(admin_96372(inj, visit))[0].creates[-1].code == "J1885"
    assert [f.deletes for f in charge_unsupported(visit)] == [("ci-drug",)]


def test_a_stale_line_without_a_known_drug_says_so_and_changes_nothing() -> None:
    inj = make_injection(drug=None, dose=None)
    visit = planned_visit(inj, charges=(stale("J1880", current=("J1885", "J1886")),))
    (finding,) = code_not_current(inj, visit)
    assert finding == Finding(detail=detail("J1880", None, None, ["J1885", "J1886"], "unknown-drug"))
    assert list(charge_unsupported(visit)) == []  # an unknown drug may be the line's: it is not deleted


@pytest.mark.parametrize("setting", [Setting.FACILITY])
def test_no_code_not_current_in_a_facility_or_for_an_admin_not_given(setting: Setting) -> None:
    inj = make_injection(drug=KETOROLAC, dose=Decimal(30))
    line = stale("J1880", current=("J1885",))
    assert list(code_not_current(inj, planned_visit(inj, charges=(line,), setting=setting))) == []
    not_given = replace(inj, status="not-done")
    assert list(code_not_current(not_given, planned_visit(not_given, charges=(line,)))) == []


def test_the_drugs_own_code_without_a_replacement_is_flagged_and_kept() -> None:
    """J1885 itself not in force, and nothing in its place: the planned line is J1885 too; no removal."""
    inj = make_injection(drug=KETOROLAC, dose=Decimal(30))
    line = stale("J1885", units=2)
    visit = planned_visit(inj, charges=(line,))
    (finding,) = code_not_current(inj, visit)
    assert finding == Finding(detail=detail("J1885", "J1885", 2, [], "no-successor"))
    assert list(charge_unsupported(visit)) == []
    assert [c.code for c in list(admin_96372(inj, visit))[0].creates] == ["96372"]  # the drug line is there


def test_a_current_drug_line_is_not_stale() -> None:
    inj = make_injection(drug=KETOROLAC, dose=Decimal(30))
    current = captured_line("J1885", "ci-drug", units=Decimal(2))
    assert list(code_not_current(inj, planned_visit(inj, charges=(current,)))) == []
