"""The audit's report.html in real headless Chromium (Debian's `chromium`), opened from disk as a revenue team would.

No console error, no page error, no request but the file itself. A full-page screenshot goes to
tests/artifacts/audit-report.png (ignored by git).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cds_service.audit.report import write_html
from tests.e2e.conftest import watched_page

playwright_api = pytest.importorskip("playwright.sync_api")

RULES = {
    "admin-96372": ("billing", "info", 4210),
    "drug-waste-modifier": ("billing", "warning", 1873),
    "multiple-injections": ("billing", "info", 642),
    "route-missing": ("documentation", "warning", 1288),
    "dose-missing": ("documentation", "warning", 517),
    "diagnosis-not-covered": ("coverage", "warning", 391),
    "same-day-em-modifier-25": ("charges", "warning", 2046),
    "charge-units-mismatch": ("charges", "warning", 733),
    "charge-unsupported": ("charges", "critical", 158),
    "invalid-resource": ("data-quality", "warning", 12),
}


def realistic_summary() -> dict[str, Any]:
    """A year of a mid-size clinic group: ten rules, twelve months, three drugs, twenty encounters, three bad lines."""
    rule_ids = list(RULES)
    months = {
        f"2024-{m:02d}": {"missed": 380 + m * 37 % 190, "incorrect": 60 + m * 23 % 70, "other": 150 + m * 41 % 120}
        for m in range(12, 0, -1)  # newest first: the report puts them in order
    }
    return {
        "generated_at": "2025-01-15T07:42:10+00:00", "export_dir": "/srv/exports/northside-clinics-2024",
        "config": "/etc/cds-service/production.yaml", "since": "2024-01-01", "until": "2024-12-31",
        "workers": 8, "seconds": 754.3, "encounters": 48213, "patients": 12877, "administrations": 61544,
        "findings": sum(count for _, _, count in RULES.values()),
        "by_rule": {rule: {"count": count, "group": group, "indicator": indicator}
                    for rule, (group, indicator, count) in RULES.items()},
        "by_month": months,
        "units_missed_by_drug": {"J3420": 2412, "J1885": 388, "J0696": 97},
        "top_encounters": [
            {"encounter_id": f"enc-2024-{10_000 + 37 * i}", "patient_id": f"pat-{4_000 + 11 * i}",
             "findings": 14 - i // 2, "rules": rule_ids[i % 7: i % 7 + 2 + i % 3]}
            for i in range(20)
        ],
        "skipped": {"count": 3, "lines": [
            {"file": "MedicationAdministration.ndjson", "line": 10422, "error": "invalid JSON: Expecting ','"},
            {"file": "Encounter.ndjson", "line": 7, "error": "not a FHIR R4 resource: no resourceType"},
            {"file": "ChargeItem.ndjson", "line": 981, "error": "<script>alert('skipped')</script>"},
        ]},
    }



def test_report_opens_offline_without_errors_and_shows_tables_and_charts(browser: Any, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    write_html(realistic_summary(), report)
    with watched_page(browser, lambda url: url.startswith("file://"), "audit-report.png") as watch:
        page = watch.page
        page.goto(report.as_uri(), wait_until="load")
        page.wait_for_timeout(300)  # time for a late request or an injected handler to show up, were there one

        assert page.title().startswith("Billing audit – northside-clinics-2024")
        rule_table = page.locator("#rule-table")
        playwright_api.expect(rule_table).to_be_visible()
        first_rules = [r.inner_text() for r in rule_table.locator("tbody tr td:first-child").all()[:3]]
        assert first_rules == ["admin-96372", "same-day-em-modifier-25", "drug-waste-modifier"]
        for chart in ("#rule-chart", "#month-chart", "#drug-chart"):
            playwright_api.expect(page.locator(chart)).to_be_visible()
            assert page.locator(chart).bounding_box()["width"] > 300
        assert page.locator("#rule-chart g.bar").count() == len(RULES)
        assert page.locator("#month-chart g.bar").count() == 36
        assert page.locator("#month-table tbody tr th").all_inner_texts() == [f"2024-{m:02d}" for m in range(1, 13)]
        assert page.locator("#drug-table tbody tr td:first-child").all_inner_texts() == ["J3420", "J1885", "J0696"]
        assert page.locator("#encounter-table tbody tr").count() == 20
        assert "<script>alert('skipped')</script>" in page.locator("#skipped-table").inner_text()
        assert page.locator("script").count() == 0
        assert page.evaluate("document.querySelectorAll('[src]').length") == 0
    assert watch.dialogs == [], f"dialogs opened: {watch.dialogs}"
