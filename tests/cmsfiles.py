"""CMS's two quarterly files, written back out in CMS's layout from a shipped quarter's rows: a new
quarter for `cds-service catalog import` to add, made of CMS's real rows with a few changes."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from msgspec.structs import replace

from cds_service.partb import stored
from cds_service.partb.model import CodeRow, NdcRow, QuarterData
from cds_service.partb.ndc import hyphenated

CROSSWALK_HEADER = ["_{year}_CODE", "Short Description", "LABELER NAME", "NDC2", "Drug Name", "HCPCS dosage",
                    "PKG SIZE", "PKG QTY", "BILLUNITS", "BILLUNITSPKG", ""]
LIMITS_HEADER = ["HCPCS Code", "Short Description", "HCPCS Code Dosage", "Payment Limit", "Co-insurance Percentage",
                 "Vaccine AWP%", "Vaccine Limit", "Blood AWP%", "Blood limit", "Clotting Factor", "Notes"]


def shipped(quarter: str) -> QuarterData:
    return stored.read_quarter(stored.SHIPPED / f"{quarter}{stored.SUFFIX}")


def effective(start: dt.date, end: dt.date) -> str:
    return f"Effective {start:%B} {start.day}, {start.year} through {end:%B} {end.day}, {end.year}"


def write(data: QuarterData, directory: Path, start: dt.date, end: dt.date) -> tuple[Path, Path]:
    """The crosswalk and payment-limit files of `data`, as in force from `start` to `end`, in Latin-1."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptions = {c.code: c.description for c in data.codes}
    head = [[f"{start:%B %Y} ASP NDC - HCPCS Crosswalk for Medicare Part B Drugs"], [f"     {effective(start, end)}"],
            [], ["The ASP crosswalks are maintained by the Division of Data Analysis and Market Based Pricing."],
            [], [], [], []]
    rows = [[cell.format(year=start.year) for cell in CROSSWALK_HEADER]]
    for r in data.ndcs:
        ndc = hyphenated(r.ndc) if len(r.ndc) == 11 and r.ndc.isdigit() else r.ndc
        rows.append([r.code, descriptions.get(r.code, ""), r.labeler, ndc, r.name, r.dosage, r.pkg_size or "",
                     r.pkg_qty or "", r.units or "", r.units_pkg or "", ""])
    crosswalk = directory / f"{start:%Y}q{(start.month - 1) // 3 + 1}-crosswalk.csv"
    crosswalk.write_bytes(text(head + rows).encode("latin-1", errors="replace"))
    head = [["Payment Allowance Limits for Medicare Part B Drugs"], [], [effective(start, end)], [],
            ["Note 1: Payment allowance limits subject to the ASP methodology."], [], [], []]
    rows = [LIMITS_HEADER] + [[c.code, c.description, c.dosage, c.limit or "N/A", "20.000", "", "", "", "", "", ""]
                              for c in data.codes if c.priced]
    limits = directory / f"{start:%Y}q{(start.month - 1) // 3 + 1}-payment-limits.csv"
    limits.write_bytes(text(head + rows).encode("latin-1", errors="replace"))
    return crosswalk, limits


def text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def quarter_2026q2() -> QuarterData:
    """2026 Q1's rows with the changes a quarter brings: J9041 dropped, J0999 added, J3425's billing unit
    changed, and Depo-Medrol 40 mg/mL (00009-0280-02) moved from J1010 to the new J1011."""
    q1 = shipped("2026q1")
    codes = [c for c in q1.codes if c.code != "J9041"]
    codes = [replace(c, dosage="100 MCG", limit="0.080") if c.code == "J3425" else c for c in codes]
    codes += [CodeRow("J0999", "Inj, testamab, 1 mg", "1 MG", "12.500", True),
              CodeRow("J1011", "Inj, methylpred acetate 40 mg", "40 MG", "4.400", True)]
    ndcs = [n for n in q1.ndcs if n.code != "J9041"]
    ndcs = [replace(n, dosage="100 MCG", units=str(int(n.units) // 10)) if n.code == "J3425" and n.units else n
            for n in ndcs]
    ndcs = [replace(n, code="J1011", dosage="40 MG", units="5", units_pkg="5") if n.ndc == "00009028002" else n
            for n in ndcs]
    ndcs.append(NdcRow("12345678901", "J0999", "Testa Labs", "Testamab", "1 MG", "1", "1", "100", "100"))
    return replace(q1, quarter="2026q2", start="2026-04-01", end="2026-06-30",
                   codes=tuple(sorted(codes, key=lambda c: c.code)), ndcs=tuple(ndcs))
