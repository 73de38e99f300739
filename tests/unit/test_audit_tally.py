"""summary.json from streamed rows: rules, months, units missed, top encounters, skipped lines."""

from __future__ import annotations

from typing import Any

from cds_service.audit.tally import Skip, Tally, kind_of


def row(rule: str, action: str, month: str = "2025-03", missed: dict[str, int] | None = None,
        part_b: str = "") -> dict[str, Any]:
    return {"rule_id": rule, "group": "billing", "indicator": "info", "action": action, "month": month,
            "missed_units": missed or {}, "part_b_limit": part_b}


def test_kind_of_a_card_follows_its_actions() -> None:
    assert [kind_of(a) for a in ("create", "create+update", "update", "delete", "update+delete", "none")] == [
        "missed", "missed", "incorrect", "incorrect", "incorrect", "other"]


def test_rows_are_counted_by_rule_month_and_missed_drug_units() -> None:
    tally = Tally(["Encounter.ndjson"])
    tally.add_rows([
        row("admin-96372", "create", missed={"J3420": 2}, part_b="2.54"),
        row("admin-96372", "create", "2025-04", {"J3420": 1, "J1885": 4}, part_b="1.27"),
        row("charge-units-mismatch", "update"), row("route-missing", "none", "", part_b="0.95"),
    ])
    summary = tally.summary({"workers": 1})
    assert summary["findings"] == 4
    assert summary["by_rule"] == {  # Part B payment limits at risk, per rule, to the cent
        "admin-96372": {"count": 2, "group": "billing", "indicator": "info", "part_b_limit": "3.81"},
        "charge-units-mismatch": {"count": 1, "group": "billing", "indicator": "info", "part_b_limit": "0.00"},
        "route-missing": {"count": 1, "group": "billing", "indicator": "info", "part_b_limit": "0.95"},
    }
    assert summary["by_month"] == {"2025-03": {"missed": 1, "incorrect": 1, "other": 0},
                                   "2025-04": {"missed": 1, "incorrect": 0, "other": 0}}
    assert summary["units_missed_by_drug"] == {"J1885": 4, "J3420": 3}


def test_top_encounters_are_the_twenty_with_most_findings_ties_by_id() -> None:
    tally = Tally([])
    for n in range(200):
        tally.add_flagged(f"pt-{n % 7}", [(f"enc-{n:03d}", n % 10, ("admin-96372",))])
    top = tally.summary({})["top_encounters"]
    assert len(top) == 20
    assert [t["findings"] for t in top] == [9] * 20
    assert [t["encounter_id"] for t in top[:3]] == ["enc-009", "enc-019", "enc-029"]
    assert top[0] == {"encounter_id": "enc-009", "patient_id": "pt-2", "findings": 9, "rules": ["admin-96372"]}


def test_skipped_lists_the_first_hundred_by_file_and_line_and_shared_lines_once() -> None:
    tally = Tally(["a.ndjson", "b.ndjson"])
    for n in range(500, 0, -1):
        tally.skip(Skip(1, n, "no resourceType"))
    tally.skip(Skip(0, 7, "invalid FHIR Medication: code: bad"), shared=True)
    tally.skip(Skip(0, 7, "invalid FHIR Medication: code: bad"), shared=True)
    skipped = tally.summary({})["skipped"]
    assert skipped["count"] == 501
    assert len(skipped["lines"]) == 100
    assert skipped["lines"][0] == {"file": "a.ndjson", "line": 7, "error": "invalid FHIR Medication: code: bad"}
    assert [s["line"] for s in skipped["lines"][1:4]] == [1, 2, 3]
