"""Write the audit's report.html: summary.json as tables and server-drawn SVG charts, with no script and no link out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

ENV = Environment(
    loader=PackageLoader("cds_service.audit", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
ENV.filters["num"] = lambda n: f"{n:,}"

SERIES = (("missed", "Missed charges"), ("incorrect", "Incorrect charges"), ("other", "Other findings"))
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CHAR_WIDTH = 6.2  # px per digit of an 11px label, to decide whether a value fits above its bar


@dataclass(frozen=True)
class HBar:
    label: str
    value: int
    y: float
    width: float
    css: str
    title: str


@dataclass(frozen=True)
class HChart:
    """Horizontal bars; a bar's width is value / scale_max of bar_area."""

    title: str
    label_width: int
    bar_area: int
    width: int
    height: int
    bars: list[HBar]
    ticks: list[tuple[float, str]]


@dataclass(frozen=True)
class VBar:
    x: float
    y: float
    width: float
    height: float
    series: str
    value: int
    title: str


@dataclass(frozen=True)
class MonthGroup:
    month: str
    label: str
    year: str
    center: float
    bars: list[VBar]


@dataclass(frozen=True)
class VChart:
    """Grouped vertical bars, one group per month and one bar per series; a bar's height is value / scale_max."""

    title: str
    left: int
    top: int
    plot_width: float
    plot_height: int
    width: int
    height: int
    groups: list[MonthGroup]
    ticks: list[tuple[float, str]]
    rotate_values: bool


def render_html(summary: Mapping[str, Any]) -> str:
    """Render the parsed summary.json as one self-contained HTML page."""
    return ENV.get_template("report.html.j2").render(**view(summary))


def write_html(summary: Mapping[str, Any], path: Path) -> None:
    """Write render_html(summary) to path, in UTF-8."""
    path.write_text(render_html(summary), encoding="utf-8")


def view(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows, computed here so the template only lays it out."""
    rules, months, drugs = rule_rows(summary), month_rows(summary), drug_rows(summary)
    skipped = summary.get("skipped") or {}
    export_dir = str(summary.get("export_dir") or "")
    return {
        "export_name": Path(export_dir).name or export_dir,
        "export_dir": export_dir,
        "config": str(summary.get("config") or ""),
        "period": period(summary.get("since"), summary.get("until")),
        "generated_at": str(summary.get("generated_at") or ""),
        "generated_at_text": timestamp(summary.get("generated_at")),
        "run_time": duration(float(summary.get("seconds") or 0)),
        "workers": int(summary.get("workers") or 0),
        "headline": [
            ("Encounters", int(summary.get("encounters") or 0), "info"),
            ("Patients", int(summary.get("patients") or 0), "info"),
            ("Administrations", int(summary.get("administrations") or 0), "info"),
            ("Findings", int(summary.get("findings") or 0), "info"),
            ("Missed charges", sum(m["missed"] for m in months), "missed"),
            ("Incorrect charges", sum(m["incorrect"] for m in months), "incorrect"),
            ("Units missed", sum(d["units"] for d in drugs), "missed"),
            ("Skipped lines", int(skipped.get("count") or 0), "other"),
        ],
        "rules": rules,
        "rule_total": sum(r["count"] for r in rules),
        "part_b_total": part_b_total(summary),
        "rule_chart": hchart("Findings per rule", [
            (r["rule"], r["count"], f"bar-{r['indicator']}", f"{r['rule']}: {r['count']:,} findings ({r['indicator']})")
            for r in rules
        ]),
        "months": months,
        "month_totals": {key: sum(m[key] for m in months) for key, _ in SERIES},
        "month_chart": vchart("Missed, incorrect and other findings per month", months),
        "series": SERIES,
        "drugs": drugs,
        "drug_chart": hchart("Estimated units missed per drug code", [
            (d["code"], d["units"], "bar-missed", f"{d['code']}: {d['units']:,} units missed") for d in drugs
        ]),
        "encounters": encounter_rows(summary),
        "skipped_count": int(skipped.get("count") or 0),
        "skipped_lines": [
            {"file": str(s.get("file", "")), "line": int(s.get("line", 0)), "error": str(s.get("error", ""))}
            for s in skipped.get("lines") or []
        ],
    }


def rule_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per rule, most findings first, with its share of all findings."""
    rows = [(int(r.get("count", 0)), str(rule), r) for rule, r in (summary.get("by_rule") or {}).items()]
    total = sum(count for count, _, _ in rows)
    return [
        {"rule": rule, "group": str(r.get("group", "")), "indicator": str(r.get("indicator", "info")), "count": count,
         "share": f"{count / total:.1%}" if total else "–", "part_b_limit": money(r.get("part_b_limit"))}
        for count, rule, r in sorted(rows, key=lambda row: (-row[0], row[1]))
    ]


def money(value: Any) -> str:
    """Dollars and cents from summary.json's decimal text; a dash for none."""
    try:
        amount = Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return "–"
    return f"${amount:,.2f}" if amount else "–"


def part_b_total(summary: Mapping[str, Any]) -> str:
    """Every drug line at risk, each once: the rules' totals count a line once per card about it."""
    return money(summary.get("part_b_limit_at_risk"))


def month_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per month, oldest first ('YYYY-MM' sorts as text)."""
    return [
        {"month": str(month), **{key: int((counts or {}).get(key, 0)) for key, _ in SERIES}}
        for month, counts in sorted((summary.get("by_month") or {}).items())
    ]


def drug_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    units = summary.get("units_missed_by_drug") or {}
    return sorted(({"code": str(c), "units": int(u)} for c, u in units.items()), key=lambda d: (-d["units"], d["code"]))


def encounter_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The top encounters, most findings first (a stable sort: ties keep the audit's order)."""
    return sorted(
        ({"encounter_id": str(e.get("encounter_id", "")), "patient_id": str(e.get("patient_id", "")),
          "findings": int(e.get("findings", 0)), "rules": [str(r) for r in e.get("rules") or []]}
         for e in summary.get("top_encounters") or []),
        key=lambda e: -e["findings"],
    )


def scale(largest: int, steps: int = 4) -> tuple[int, list[int]]:
    """A round axis maximum at or above largest, and its tick values; never 0, so nothing divides by it."""
    raw = max(largest, 1) / steps
    magnitude = 10 ** math.floor(math.log10(raw))
    step = int(next(s for s in (m * magnitude for m in (1, 2, 2.5, 5, 10)) if s >= raw and float(s).is_integer()))
    top = step * math.ceil(max(largest, 1) / step)
    return top, list(range(0, top + 1, step))


def hchart(title: str, rows: Sequence[tuple[str, int, str, str]], label_width: int = 240) -> HChart:
    """Horizontal bars for (label, value, css class, tooltip) rows, in the order given."""
    bar_area, row, top = 700, 26, 26
    scale_max, tick_values = scale(max((value for _, value, _, _ in rows), default=0), 5)
    bars = [
        HBar(label, value, top + i * row, round(bar_area * value / scale_max, 2), css, tooltip)
        for i, (label, value, css, tooltip) in enumerate(rows)
    ]
    ticks = [(label_width + bar_area * t / scale_max, f"{t:,}") for t in tick_values]
    return HChart(title, label_width, bar_area, label_width + bar_area + 70, top + max(len(bars), 1) * row + 8,
                  bars, ticks)


def vchart(title: str, months: Sequence[Mapping[str, Any]]) -> VChart:
    """Grouped vertical bars of missed / incorrect / other per month, months left to right."""
    left, plot_height, bottom = 60, 220, 44
    group = max(48.0, min(110.0, 1000 / max(len(months), 1)))
    bar = (group - 14) / len(SERIES)
    largest = max((m[key] for m in months for key, _ in SERIES), default=0)
    scale_max, tick_values = scale(largest)
    rotate = len(f"{largest:,}") * CHAR_WIDTH > bar + 3
    top = 18 + (int(len(f"{largest:,}") * CHAR_WIDTH) if rotate else 0)
    baseline = top + plot_height
    groups = []
    for i, m in enumerate(months):
        x0 = left + i * group + 7
        bars = []
        for j, (key, name) in enumerate(SERIES):
            height = round(plot_height * m[key] / scale_max, 2)
            bars.append(VBar(x=round(x0 + j * bar, 2), y=round(baseline - height, 2), width=round(bar - 2, 2),
                             height=height, series=key, value=m[key], title=f"{m['month']}: {m[key]:,} {name.lower()}"))
        label, year = month_label(m["month"])
        groups.append(MonthGroup(m["month"], label, year, round(left + (i + 0.5) * group, 2), bars))
    ticks = [(round(baseline - plot_height * t / scale_max, 2), f"{t:,}") for t in tick_values]
    plot_width = max(len(months), 1) * group
    return VChart(title, left, top, plot_width, plot_height, int(left + plot_width + 16), baseline + bottom,
                  groups, ticks, rotate)


def month_label(month: str) -> tuple[str, str]:
    """'2025-03' -> ('Mar', '2025'); anything else is shown as it is."""
    year, _, number = month.partition("-")
    if number.isdigit() and 1 <= int(number) <= 12:
        return MONTHS[int(number) - 1], year
    return month, ""


def period(since: str | None, until: str | None) -> str:
    if not since and not until:
        return "All dates in the export"
    return f"{since or 'start of the export'} – {until or 'end of the export'}"


def timestamp(value: str | None) -> str:
    """An ISO 8601 instant as 'YYYY-MM-DD HH:MM:SS±HH:MM'; left as it is when it does not parse."""
    if not value:
        return "unknown"
    try:
        return datetime.fromisoformat(value).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return value


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours:,} h {minutes:02d} min"
