"""Medical necessity and frequency (rules/coverage.py), on tiny facts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cds_service.rules import RULES, evaluate
from cds_service.rules.coverage import diagnosis_missing, diagnosis_not_covered, frequency_exceeded, icd10_key
from cds_service.rules.model import Finding, Frequency, Injection, PayerProfile, Visit
from tests.unit.factories import (
    B12_FREQUENCY,
    DOS,
    HYDROXOCOBALAMIN,
    make_injection,
    make_order,
    make_payer,
    make_visit,
)

Rule = Callable[[Injection, Visit], Iterator[Finding]]

NOT_COMPLETED = ["in-progress", "on-hold", "not-done", "stopped", "unknown"]
# As the catalog stores them: prefixes without their dot (catalog.py runs them through icd10_key).
B12_COVERED = ("D51", "E538", "K294")
PAYER = make_payer(
    display="Commercial (test)",
    covered_diagnoses={"cyanocobalamin": B12_COVERED},
    frequency={"cyanocobalamin": B12_FREQUENCY},
)


def run(rule: Rule, inj: Injection, visit: Visit | None = None) -> list[Finding]:
    return list(rule(inj, visit or make_visit(inj, payer=PAYER)))


def days_before(days: int) -> dt.date:
    return DOS - dt.timedelta(days=days)


def dose(days: int, n: int = 0, **overrides: Any) -> Injection:
    """A completed B12 administration `days` before DOS (negative: after), from an earlier encounter."""
    day = days_before(days)
    fields: dict[str, Any] = {
        "ref": f"MedicationAdministration/h{days}-{n}",
        "date_of_service": day,
        "at": dt.datetime.combine(day, dt.time(10, 30)),
    }
    fields.update(overrides)
    return make_injection(**fields)


def frequency_findings(inj: Injection, *history: Injection, payer: PayerProfile = PAYER) -> list[Finding]:
    return run(frequency_exceeded, inj, make_visit(inj, history=history, payer=payer))


def exceeded(previous: int, days: int) -> list[Finding]:
    return [Finding(detail={"previous": days_before(previous), "days": days, "min_days": 28})]


# Monthly maintenance well past any loading phase: doses 60 and 90 days before the previous one's date.
def maintenance(previous: int) -> tuple[Injection, ...]:
    return dose(previous + 60), dose(previous + 30), dose(previous)


def test_icd10_key_drops_dot_and_case() -> None:
    assert [icd10_key(c) for c in ("D51.0", " e53.8 ", "K29.41", "R53.83")] == ["D510", "E538", "K2941", "R5383"]


# diagnosis-missing


def test_diagnosis_missing_fires_without_diagnoses() -> None:
    assert run(diagnosis_missing, make_injection(diagnoses=())) == [Finding()]


def test_diagnosis_missing_fires_on_order() -> None:
    order = make_order(diagnoses=())
    assert run(diagnosis_missing, order, make_visit(order, hook_kind="order-sign")) == [Finding()]


@pytest.mark.parametrize("diagnoses", [("D51.0",), ("R53.83",), ("R53.83", "D51.0")])
def test_diagnosis_missing_silent_with_any_diagnosis(diagnoses: tuple[str, ...]) -> None:
    assert run(diagnosis_missing, make_injection(diagnoses=diagnoses)) == []


@pytest.mark.parametrize("status", NOT_COMPLETED)
def test_diagnosis_missing_ignores_admin_not_completed(status: str) -> None:
    assert run(diagnosis_missing, make_injection(status=status, diagnoses=())) == []


# diagnosis-not-covered


@pytest.mark.parametrize(
    "diagnoses",
    [("D51.0",), ("D51.9",), ("E53.8",), ("K29.41",), ("K29.40",), ("d51.0",), ("D510",), ("R53.83", "K29.41")],
)
def test_diagnosis_not_covered_silent_when_any_diagnosis_covered(diagnoses: tuple[str, ...]) -> None:
    assert run(diagnosis_not_covered, make_injection(diagnoses=diagnoses)) == []


@pytest.mark.parametrize(
    "diagnoses",
    [("R53.83",), ("E53.9",), ("K29.5",), ("D52.0",), ("R53.83", "E66.9")],
    ids=["fatigue", "E53.9-outside-E53.8", "K29.5-outside-K29.4", "D52-not-listed", "fatigue-and-obesity"],
)
def test_diagnosis_not_covered_fires_with_diagnoses_and_payer(diagnoses: tuple[str, ...]) -> None:
    assert run(diagnosis_not_covered, make_injection(diagnoses=diagnoses)) == [
        Finding(detail={"diagnoses": list(diagnoses), "payer": "Commercial (test)"})
    ]


def test_diagnosis_not_covered_fires_on_order() -> None:
    order = make_order(diagnoses=("R53.83",))
    visit = make_visit(order, hook_kind="order-sign", payer=PAYER)
    assert run(diagnosis_not_covered, order, visit) == [
        Finding(detail={"diagnoses": ["R53.83"], "payer": "Commercial (test)"})
    ]


@pytest.mark.parametrize(
    ("overrides", "payer"),
    [
        ({}, None),
        ({"drug": HYDROXOCOBALAMIN}, PAYER),
        ({}, make_payer()),
        ({"drug": None, "drug_coded": False}, PAYER),
        ({"diagnoses": ()}, PAYER),
        ({"status": "not-done"}, PAYER),
    ],
    ids=["no-payer", "no-list-for-drug", "payer-without-lists", "unknown-drug", "no-diagnoses", "not-completed"],
)
def test_diagnosis_not_covered_silent(overrides: dict[str, Any], payer: PayerProfile | None) -> None:
    inj = make_injection(**{"diagnoses": ("R53.83",), **overrides})
    assert run(diagnosis_not_covered, inj, make_visit(inj, payer=payer)) == []


# frequency-exceeded: maintenance


@pytest.mark.parametrize(("previous", "fires"), [(90, False), (30, False), (28, False), (27, True), (1, True)])
def test_frequency_minimum_interval_in_maintenance(previous: int, fires: bool) -> None:
    expected = exceeded(previous, previous) if fires else []
    assert frequency_findings(make_injection(), *maintenance(previous)) == expected


def test_frequency_previous_is_the_latest_earlier_dose() -> None:
    history = (*maintenance(20), dose(25))
    assert frequency_findings(make_injection(), *history) == exceeded(20, 20)


def test_frequency_first_dose_on_record_is_silent() -> None:
    assert frequency_findings(make_injection()) == []


def test_frequency_lone_prior_dose_starts_a_series_so_second_dose_is_loading() -> None:
    """Nothing before the prior dose: it opens a new series, and dose 2 on day 27 is within loading."""
    assert frequency_findings(make_injection(), dose(27)) == []


def test_frequency_without_loading_phase_lone_prior_dose_fires() -> None:
    payer = make_payer(frequency={"cyanocobalamin": Frequency(min_interval_days=28)})
    assert frequency_findings(make_injection(), dose(27), payer=payer) == exceeded(27, 27)


# frequency-exceeded: loading phase


@pytest.mark.parametrize("gap", [57, 200])
def test_frequency_new_series_after_long_gap_loads_daily(gap: int) -> None:
    """Maintenance, a gap longer than 2 x 28 days, then a new series of daily doses for 7 days."""
    old = (dose(6 + gap + 30), dose(6 + gap))
    daily = tuple(dose(d) for d in range(6, 0, -1))
    assert frequency_findings(make_injection(), *old, *daily) == []


def test_frequency_gap_of_exactly_twice_the_interval_does_not_start_a_series() -> None:
    old = (dose(6 + 56 + 30), dose(6 + 56))
    daily = tuple(dose(d) for d in range(6, 0, -1))
    assert frequency_findings(make_injection(), *old, *daily) == exceeded(1, 1)


@pytest.mark.parametrize(("prior_doses", "fires"), [(11, False), (12, True)])
def test_frequency_loading_phase_allows_12_doses(prior_doses: int, fires: bool) -> None:
    daily = tuple(dose(d) for d in range(prior_doses, 0, -1))
    assert frequency_findings(make_injection(), *daily) == (exceeded(1, 1) if fires else [])


@pytest.mark.parametrize(
    ("series_start", "previous", "fires"),
    [(42, 7, False), (43, 8, True), (49, 7, True), (50, 8, True), (50, 1, True)],
)
def test_frequency_loading_phase_ends_42_days_after_first_dose(series_start: int, previous: int, fires: bool) -> None:
    """Weekly doses from `series_start` days ago down to `previous`: loading within 42 days of the first, not after."""
    weekly = tuple(dose(d) for d in range(series_start, previous - 1, -7))
    assert weekly[-1].date_of_service == days_before(previous)
    assert frequency_findings(make_injection(), *weekly) == (exceeded(previous, previous) if fires else [])


def test_frequency_loading_phase_counts_doses_not_days() -> None:
    """12 earlier doses on 11 days (two on day 11): the current dose is the 13th, beyond the loading phase."""
    daily = tuple(dose(d) for d in range(11, 0, -1))
    assert frequency_findings(make_injection(), dose(11, n=1), *daily) == exceeded(1, 1)


# frequency-exceeded: same day, status, drug, history


def test_frequency_two_doses_same_day_only_the_later_fires() -> None:
    """The later dose by time fires, even though its id sorts first."""
    later = make_injection(ref="MedicationAdministration/a", at=dt.datetime(2025, 3, 4, 15, 0))
    earlier = make_injection(ref="MedicationAdministration/b", at=dt.datetime(2025, 3, 4, 9, 0))
    visit = make_visit(later, earlier, history=maintenance(30), payer=PAYER)
    assert run(frequency_exceeded, later, visit) == exceeded(0, 0)
    assert run(frequency_exceeded, earlier, visit) == []


def test_frequency_two_untimed_doses_same_day_order_by_id() -> None:
    first = make_injection(ref="MedicationAdministration/a", at=None, timed=False)
    second = make_injection(ref="MedicationAdministration/b", at=None, timed=False)
    visit = make_visit(first, second, history=maintenance(30), payer=PAYER)
    assert run(frequency_exceeded, first, visit) == []
    assert run(frequency_exceeded, second, visit) == exceeded(0, 0)


@pytest.mark.parametrize(("status", "fires"), [("completed", True), *[(s, False) for s in NOT_COMPLETED]])
def test_frequency_ignores_prior_doses_not_completed(status: str, fires: bool) -> None:
    history = (*maintenance(30), dose(10, status=status))
    assert frequency_findings(make_injection(), *history) == (exceeded(10, 10) if fires else [])


def test_frequency_ignores_other_drugs() -> None:
    history = (*maintenance(30), dose(10, drug=HYDROXOCOBALAMIN))
    assert frequency_findings(make_injection(), *history) == []


def test_frequency_ignores_later_doses() -> None:
    history = (*maintenance(30), dose(-3))
    assert frequency_findings(make_injection(), *history) == []


def test_frequency_history_counts_as_prior_doses() -> None:
    inj = make_injection()
    assert frequency_findings(inj, *maintenance(10)) == exceeded(10, 10)
    assert run(frequency_exceeded, inj, make_visit(inj, payer=PAYER)) == []


def test_frequency_prior_doses_in_the_same_visit_count_too() -> None:
    inj = make_injection()
    visit = make_visit(*maintenance(10), inj, payer=PAYER)
    assert run(frequency_exceeded, inj, visit) == exceeded(10, 10)


def test_frequency_order_being_signed_checks_history() -> None:
    order = make_order(date_of_service=DOS)
    visit = make_visit(order, hook_kind="order-sign", history=maintenance(10), payer=PAYER)
    assert run(frequency_exceeded, order, visit) == exceeded(10, 10)


@pytest.mark.parametrize(
    ("overrides", "payer"),
    [
        ({}, None),
        ({}, make_payer(frequency={"hydroxocobalamin": B12_FREQUENCY})),
        ({"drug": None, "drug_coded": False}, PAYER),
        ({"date_of_service": None}, PAYER),
        ({"status": "not-done"}, PAYER),
    ],
    ids=["no-payer", "no-limit-for-drug", "unknown-drug", "no-date", "not-completed"],
)
def test_frequency_silent(overrides: dict[str, Any], payer: PayerProfile | None) -> None:
    inj = make_injection(**overrides)
    assert run(frequency_exceeded, inj, make_visit(inj, history=maintenance(10), payer=payer)) == []


# the registry and evaluate()

TRIGGERS: dict[str, tuple[Rule, dict[str, Any]]] = {
    "diagnosis-missing": (diagnosis_missing, {"diagnoses": ()}),
    "diagnosis-not-covered": (diagnosis_not_covered, {"diagnoses": ("R53.83",)}),
    "frequency-exceeded": (frequency_exceeded, {"date_of_service": days_before(10)}),
}


@pytest.mark.parametrize("rule_id", list(TRIGGERS))
def test_evaluate_labels_finding_with_rule_id_and_subject(rule_id: str) -> None:
    rule, overrides = TRIGGERS[rule_id]
    assert RULES[rule_id].check is rule
    faulty = make_injection(**{"ref": "MedicationAdministration/faulty", **overrides})
    clean = dose(30, ref="MedicationAdministration/clean")  # 30 days after the last maintenance dose
    visit = make_visit(clean, faulty, history=(dose(90), dose(60)), payer=PAYER)
    findings = list(evaluate(visit, {rule_id: {}}))
    assert [(f.rule, f.subject) for f in findings] == [(rule_id, "MedicationAdministration/faulty")]
    assert [f.detail for f in findings] == [f.detail for f in rule(faulty, visit)]
