"""The shipped quarters (CMS's files from 2024 Q1 to 2026 Q1) as a hook call reads them: the quarter of a
date, the code in force, an NDC's package, a name found in free text."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cds_service import partb
from cds_service.partb import names, stored
from cds_service.partb.index import units_per_item, units_per_ml

PARTB = partb.load(None)


def at(day: str) -> int:
    pick = PARTB.pick(dt.date.fromisoformat(day))
    assert pick is not None
    return pick.index


def test_nine_quarters_ship_and_their_merged_index_is_current() -> None:
    assert PARTB.ids == ("2024q1", "2024q2", "2024q3", "2024q4", "2025q1", "2025q2", "2025q3", "2025q4", "2026q1")
    files = stored.quarter_files([stored.SHIPPED])
    of = (*stored.inputs(files), names.signature())
    assert stored.find_index([stored.SHIPPED], of) is not None  # start-up never derives it


@pytest.mark.parametrize(("day", "quarter", "fit"), [
    ("2024-02-15", "2024q1", "in"), ("2024-03-31", "2024q1", "in"), ("2024-04-01", "2024q2", "in"),
    ("2025-06-10", "2025q2", "in"), ("2026-06-10", "2026q1", "after"), ("2023-12-31", "2024q1", "before"),
])
def test_the_quarter_of_a_date(day: str, quarter: str, fit: str) -> None:
    pick = PARTB.pick(dt.date.fromisoformat(day))
    assert pick is not None and (pick.quarter.id, pick.fit) == (quarter, fit)


def test_a_dropped_code_stands_for_the_code_its_ndcs_moved_to() -> None:
    assert PARTB.in_force("J1030", at("2024-02-15")) == {"J1030"}
    assert PARTB.in_force("J1030", at("2025-06-10")) == {"J1010"}
    assert PARTB.in_force("J1040", at("2025-06-10")) == {"J1010"}
    assert PARTB.in_force("J9250", at("2025-06-10")) == {"J9260"}  # methotrexate 5 mg -> 50 mg
    assert PARTB.dropped("J1030", at("2025-06-10")) and not PARTB.dropped("J1030", at("2024-02-15"))


def test_a_new_code_stands_for_the_codes_it_replaced_before_it_was_listed() -> None:
    assert PARTB.in_force("J1010", at("2024-02-15")) == {"J1020", "J1030", "J1040"}


def test_a_code_missing_one_quarter_and_listed_again_stays_in_force() -> None:
    assert PARTB.code("J3425", at("2024-08-01")) is None  # hydroxocobalamin: not priced in 2024 Q3
    assert PARTB.in_force("J3425", at("2024-08-01")) == {"J3425"}
    assert not PARTB.dropped("J3425", at("2024-08-01"))


def test_a_code_never_listed_is_taken_as_given() -> None:
    assert PARTB.in_force("J3490", at("2025-06-10")) == {"J3490"} and not PARTB.known("J3490")


def test_quadrivalent_flu_codes_leave_the_payment_limit_files() -> None:
    assert PARTB.code("90686", at("2024-08-01")) is not None
    assert PARTB.code("90686", at("2024-11-01")) is None and PARTB.dropped("90686", at("2024-11-01"))
    assert PARTB.code("90656", at("2024-11-01")) is not None


def test_an_ndc_package_by_quarter() -> None:
    listed = PARTB.packages("00009028002", at("2025-06-10"))
    assert listed is not None
    [depo] = listed[1]
    assert (depo.code, depo.name, units_per_item(depo), units_per_ml(depo)) == (
        "J1010", "Depo-Medrol", Decimal(200), Decimal(40))
    listed_2024 = PARTB.packages("00009028002", at("2024-02-15"))
    assert listed_2024 is not None and [p.code for p in listed_2024[1]] == ["J1030"]


def test_payment_limit_per_unit_by_quarter() -> None:
    j1010 = PARTB.code("J1010", at("2025-06-10"))
    assert j1010 is not None and (j1010.dosage, j1010.limit) == ("1 MG", Decimal("0.110"))
    j1030 = PARTB.code("J1030", at("2024-02-15"))
    assert j1030 is not None and (j1030.dosage, j1030.limit) == ("40 MG", Decimal("6.419"))


@pytest.mark.parametrize(("text", "day", "codes"), [
    ("Depo-Medrol 80 mg/mL", "2025-06-10", {"J1010"}),
    ("Depo-Medrol 80 mg/mL", "2024-02-15", {"J1020", "J1030", "J1040"}),
    ("Prolia 60 mg/mL syringe", "2025-06-10", {"J0897"}),
    ("testosterone enanthate 200 mg/mL", "2025-06-10", {"J3121"}),
    ("ondansetron 4 mg", "2025-06-10", {"J2405", "Q0162"}),  # injection and oral: the route chooses
])
def test_a_drug_named_in_free_text(text: str, day: str, codes: set[str]) -> None:
    found = PARTB.by_name(text, at(day))
    assert found is not None and found[1] == codes


def test_an_unknown_name_is_not_found() -> None:
    assert PARTB.by_name("Unobtainium 5 mg", at("2025-06-10")) is None
