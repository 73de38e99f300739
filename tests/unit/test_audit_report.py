"""The audit's report.html: every figure of summary.json is shown, escaped, drawn to scale and self-contained."""

from __future__ import annotations

import copy
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cds_service.audit.report import render_html, scale, write_html

HOSTILE = "<script>alert(1)</script>"


def make_summary(**overrides: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "generated_at": "2025-06-30T14:05:09+00:00", "export_dir": "/data/export-2025", "config": "config/default.yaml",
        "since": "2025-01-01", "until": "2025-03-31", "workers": 4, "seconds": 12.5,
        "encounters": 12345, "patients": 4321, "administrations": 23456, "findings": 1617,
        "by_rule": {
            "admin-96372": {"count": 1200, "group": "billing", "indicator": "info"},
            "charge-unsupported": {"count": 17, "group": "charges", "indicator": "critical"},
            "route-missing": {"count": 400, "group": "documentation", "indicator": "warning"},
        },
        "by_month": {  # not in order: the report sorts them
            "2025-03": {"missed": 300, "incorrect": 5, "other": 100},
            "2025-01": {"missed": 500, "incorrect": 10, "other": 150},
            "2025-02": {"missed": 400, "incorrect": 2, "other": 150},
        },
        "units_missed_by_drug": {"J3420": 1500, "J1885": 40, "J0696": 7},
        "top_encounters": [
            {"encounter_id": "enc-1", "patient_id": "pat-1", "findings": 9, "rules": ["admin-96372", "route-missing"]},
            {"encounter_id": "enc-2", "patient_id": "pat-2", "findings": 4, "rules": ["charge-unsupported"]},
        ],
        "skipped": {"count": 1, "lines": [{"file": "Encounter.ndjson", "line": 7, "error": "invalid JSON"}]},
    }
    summary.update(overrides)
    return summary


def empty_summary() -> dict[str, Any]:
    return make_summary(encounters=0, patients=0, administrations=0, findings=0, since=None, until=None, by_rule={},
                        by_month={}, units_missed_by_drug={}, top_encounters=[], skipped={"count": 0, "lines": []})


class Page(HTMLParser):
    """The parts of the page the tests read: table rows by table id, SVG bars by chart id, every tag's attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.bars: dict[str, list[dict[str, str]]] = {}
        self._table: str | None = None
        self._chart: str | None = None
        self._cell: list[str] | None = None
        self._bar: dict[str, str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "table":
            self._table = a.get("id", "")
        elif tag == "svg":
            self._chart = a.get("id", "")
        elif tag == "tr" and self._table is not None:
            self.rows.setdefault(self._table, []).append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "g" and "bar" in a.get("class", "").split() and self._chart is not None:
            self._bar = dict(a)
            self.bars.setdefault(self._chart, []).append(self._bar)
        elif tag == "rect" and self._bar is not None:
            self._bar.update({f"rect_{k}": v for k, v in a.items()})

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "svg":
            self._chart = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.rows[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "g":
            self._bar = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def body_rows(self, table: str) -> list[list[str]]:
        """Rows of a table without its header and footer rows."""
        return self.rows[table][1:-1] if self.rows[table][-1][0].startswith("All ") else self.rows[table][1:]


def test_each_rule_is_listed_with_group_indicator_and_count_most_findings_first() -> None:
    page = Page(render_html(make_summary()))
    assert [row[:4] for row in page.body_rows("rule-table")] == [
        ["admin-96372", "billing", "info", "1,200"],
        ["route-missing", "documentation", "warning", "400"],
        ["charge-unsupported", "charges", "critical", "17"],
    ]
    assert page.rows["rule-table"][-1][:2] == ["All rules", "1,617"]
    assert [b["data-label"] for b in page.bars["rule-chart"]] == ["admin-96372", "route-missing", "charge-unsupported"]


def test_months_are_listed_oldest_first_with_missed_incorrect_and_other() -> None:
    page = Page(render_html(make_summary()))
    assert page.body_rows("month-table") == [
        ["2025-01", "500", "10", "150", "660"],
        ["2025-02", "400", "2", "150", "552"],
        ["2025-03", "300", "5", "100", "405"],
    ]
    assert page.rows["month-table"][-1] == ["All months", "1,200", "17", "400", "1,617"]
    months = [a["data-month"] for tag, a in page.tags if tag == "g" and "data-month" in a]
    assert months == ["2025-01", "2025-02", "2025-03"]


def test_units_missed_are_listed_per_drug_code() -> None:
    page = Page(render_html(make_summary()))
    assert page.body_rows("drug-table") == [["J3420", "1,500"], ["J1885", "40"], ["J0696", "7"]]
    assert [(b["data-label"], b["data-value"]) for b in page.bars["drug-chart"]] == [
        ("J3420", "1500"), ("J1885", "40"), ("J0696", "7")]


def test_top_encounters_are_listed_with_patient_findings_and_rules() -> None:
    page = Page(render_html(make_summary()))
    assert page.body_rows("encounter-table") == [
        ["1", "enc-1", "pat-1", "9", "admin-96372route-missing"],
        ["2", "enc-2", "pat-2", "4", "charge-unsupported"],
    ]


def test_header_and_headline_figures_use_thousands_separators() -> None:
    html = render_html(make_summary())
    for text in ("12,345", "4,321", "23,456", "1,617", "/data/export-2025", "config/default.yaml",
                 "2025-01-01 – 2025-03-31", "2025-06-30 14:05:09+00:00", "12.5 s"):
        assert text in html
    assert "<title>Billing audit – export-2025 – 2025-06-30 14:05:09+00:00</title>" in html


def test_hostile_text_is_shown_as_text_never_as_markup() -> None:
    summary = make_summary(export_dir=HOSTILE, config=HOSTILE, generated_at=HOSTILE)
    summary["by_rule"][HOSTILE] = {"count": 3, "group": HOSTILE, "indicator": "warning"}
    summary["by_month"][HOSTILE] = {"missed": 1, "incorrect": 0, "other": 0}
    summary["units_missed_by_drug"][HOSTILE] = 2
    summary["top_encounters"].append({"encounter_id": HOSTILE, "patient_id": '"><img src=x onerror=alert(2)>',
                                      "findings": 1, "rules": [HOSTILE]})
    summary["skipped"]["lines"].append({"file": HOSTILE, "line": 1, "error": HOSTILE})
    html = render_html(summary)
    page = Page(html)
    assert not [tag for tag, _ in page.tags if tag in ("script", "img")]
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert [HOSTILE, '"><img src=x onerror=alert(2)>'] == page.body_rows("encounter-table")[-1][1:3]
    assert HOSTILE in [b["data-label"] for b in page.bars["rule-chart"]]


@pytest.mark.parametrize("summary", [empty_summary(), {}], ids=["zero", "no-keys"])
def test_an_empty_summary_renders_with_no_findings(summary: dict[str, Any]) -> None:
    html = render_html(summary)
    page = Page(html)
    assert "No findings." in html
    assert "No findings in any month." in html
    assert "No missed drug units." in html
    assert "No encounters with findings." in html
    assert "None: every line of the export was read." in html
    assert "All dates in the export" in html
    assert page.bars == {}


def test_skipped_lines_say_how_many_are_listed() -> None:
    lines = [{"file": "MedicationAdministration.ndjson", "line": n, "error": "invalid JSON"} for n in range(1, 101)]
    page = Page(render_html(make_summary(skipped={"count": 1234, "lines": lines})))
    assert len(page.body_rows("skipped-table")) == 100
    assert page.body_rows("skipped-table")[0] == ["MedicationAdministration.ndjson", "1", "invalid JSON"]
    assert "1,234 lines of the export could not be read and were left out; the first 100 are listed." in \
        " ".join(render_html(make_summary(skipped={"count": 1234, "lines": lines})).split())


def test_the_page_loads_nothing_and_runs_no_script() -> None:
    html = render_html(make_summary())
    page = Page(html)
    assert "http://" not in html and "https://" not in html
    assert not [tag for tag, _ in page.tags if tag in ("script", "img", "iframe", "object", "embed")]
    assert not [a for _, a in page.tags if "src" in a]
    links = [a["href"] for _, a in page.tags if "href" in a]
    assert links and all(h.startswith("#") or h == "data:," for h in links)
    assert "@import" not in html
    svgs = [a for tag, a in page.tags if tag == "svg" and a.get("role") == "img"]
    assert {a["id"] for a in svgs} == {"rule-chart", "month-chart", "drug-chart"}
    titles = [a.get("id") for tag, a in page.tags if tag == "title"]
    assert {f"{a['id']}-title" for a in svgs} <= set(titles)


def test_rule_bar_widths_are_proportional_to_counts() -> None:
    bars = Page(render_html(make_summary())).bars["rule-chart"]
    ratios = {float(b["rect_width"]) / int(b["data-value"]) for b in bars}
    assert max(ratios) - min(ratios) < 0.01
    widest = max(bars, key=lambda b: int(b["data-value"]))
    assert 0 < float(widest["rect_width"]) <= 700


def test_month_bar_heights_are_proportional_and_stand_on_one_baseline() -> None:
    bars = Page(render_html(make_summary())).bars["month-chart"]
    assert len(bars) == 9
    assert [b["data-series"] for b in bars[:3]] == ["missed", "incorrect", "other"]
    ratios = {float(b["rect_height"]) / int(b["data-value"]) for b in bars}
    assert max(ratios) - min(ratios) < 0.01
    baselines = {round(float(b["rect_y"]) + float(b["rect_height"]), 1) for b in bars}
    assert len(baselines) == 1


def test_a_zero_count_draws_a_zero_bar() -> None:
    summary = make_summary()
    summary["by_rule"]["dose-missing"] = {"count": 0, "group": "documentation", "indicator": "warning"}
    bars = Page(render_html(summary)).bars["rule-chart"]
    assert [(b["data-label"], b["rect_width"]) for b in bars][-1] == ("dose-missing", "0.0")


@pytest.mark.parametrize("largest", [0, 1, 3, 7, 10, 99, 596, 1234, 98765])
def test_the_axis_scale_covers_the_largest_value_with_round_ticks(largest: int) -> None:
    top, ticks = scale(largest)
    assert top >= max(largest, 1) and ticks[0] == 0 and ticks[-1] == top
    step = ticks[1] - ticks[0]
    assert all(b - a == step for a, b in zip(ticks, ticks[1:], strict=False))
    assert len(ticks) <= 6 and str(step).rstrip("0") in {"1", "2", "25", "5"}


def test_write_html_writes_the_rendered_page_in_utf8(tmp_path: Path) -> None:
    summary = make_summary()
    before = copy.deepcopy(summary)
    write_html(summary, tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == render_html(summary)
    assert summary == before  # the caller's summary is left as it was
