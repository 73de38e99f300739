"""The report.html of a real `cds-service audit` run, on a generated export, in headless Chromium.

No console error, no page error, no failed request and no request but the file; the tables say what
summary.json says. A full-page screenshot goes to tests/artifacts/audit-report-real.png (ignored by git).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import run_cli, watched_page
from tests.integration.test_audit import make_export

playwright_api = pytest.importorskip("playwright.sync_api")



@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report folder of `cds-service audit` over a 300-encounter export, run as a process."""
    export = make_export(tmp_path_factory.mktemp("export") / "export", 300, "--seed", "21")
    out = tmp_path_factory.mktemp("audit") / "report"
    done = run_cli("audit", str(export), "--out", str(out), "--workers", "2", timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_the_report_of_a_real_run_opens_without_errors_and_matches_summary_json(browser: Any, audited: Path) -> None:
    summary = json.loads((audited / "summary.json").read_text())
    with open(audited / "findings.csv", newline="", encoding="utf-8") as fh:
        assert summary["findings"] == sum(1 for _ in csv.DictReader(fh)) > 500
    report = (audited / "report.html").as_uri()
    with watched_page(browser, lambda url: url == report, "audit-report-real.png") as watch:
        page = watch.page
        page.goto(report, wait_until="load")
        page.wait_for_timeout(300)  # time for a late request to show up, were there one

        rows = page.locator("#rule-table tbody tr")
        shown = {row.locator("td").nth(0).inner_text(): int(row.locator("td").nth(3).inner_text().replace(",", ""))
                 for row in rows.all()}
        assert shown == {rule: r["count"] for rule, r in summary["by_rule"].items()}
        assert len(shown) >= 8
        total = page.locator("#rule-table tfoot td.num").first.inner_text()
        assert int(total.replace(",", "")) == summary["findings"]
        assert page.locator("#month-table tbody tr th").all_inner_texts() == list(summary["by_month"])
        assert page.locator("#rule-chart g.bar").count() == len(summary["by_rule"])
        assert page.locator("#encounter-table tbody tr").count() == len(summary["top_encounters"]) == 20

