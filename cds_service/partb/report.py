"""What a health IT team reads of the loaded quarters: which are loaded, where the configured catalog
disagrees with CMS, and a drug looked up quarter by quarter (`check-config`, `catalog`, the console)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

from msgspec import Struct

from cds_service.catalog import DrugCatalog
from cds_service.partb import ndc
from cds_service.partb.index import PartB, bits, units_per_item
from cds_service.partb.model import quarter_label
from cds_service.units import canonical, parse_dosage

CODE = re.compile(r"[A-Va-v]\d{4}|\d{4}[0-9FTUftu]")


def quarters(partb: PartB) -> Iterator[str]:
    if not partb:
        yield "CMS Part B quarters loaded: none"
        return
    yield f"CMS Part B quarters loaded: {len(partb.quarters)} ({quarter_label(partb.ids[0])} to " \
          f"{quarter_label(partb.ids[-1])})"
    for q in partb.quarters:
        parts = [f"{len(q.codes)} codes", f"{q.ndc_count} NDCs" if q.has_crosswalk else "no crosswalk",
                 "payment limits" if q.has_limits else "no payment limits"]
        yield f"  {quarter_label(q.id)}  {q.start} to {q.end}  {', '.join(parts)}"


def summary(partb: PartB) -> dict[str, object]:
    """The loaded quarters for /healthz."""
    return {"quarters": list(partb.ids), "first": partb.ids[0] if partb else None,
            "last": partb.ids[-1] if partb else None}


def disagreements(catalog: DrugCatalog, partb: PartB) -> Iterator[str]:
    """Where a configured code or billing unit disagrees with CMS's files, quarter by quarter."""
    last = len(partb.quarters) - 1
    for key, drug in catalog.drugs.items():
        # Of a list, the older codes stand for the dates CMS listed them: only a list with none left is stale.
        current = any(last in partb.listed_in(code) or not partb.known(code) for code in drug.hcpcs)
        for code in drug.hcpcs:
            listed = partb.listed_in(code)
            if listed and listed[-1] < last and not (len(drug.hcpcs) > 1 and current):
                after = partb.in_force(code, len(partb.quarters) - 1) - {code}
                instead = f" (its NDCs bill {', '.join(sorted(after))})" if after else ""
                yield (f"drugs/{key}/hcpcs: {code} is not in CMS's files from "
                       f"{quarter_label(partb.quarters[listed[-1] + 1].id)} on{instead}")
            if drug.billing_unit is None:
                continue
            for i in listed:
                dosage = parse_dosage(partb.quarters[i].codes[code].dosage)
                unit = drug.billing_unit
                if dosage.computable and (dosage.value, dosage.unit) != (unit.value, canonical(unit.unit)):
                    yield (f"drugs/{key}/billing_unit: {unit.value} {unit.unit} for {code}, but CMS's "
                           f"{quarter_label(partb.quarters[i].id)} files bill it per {dosage.text}")
                    break


class Row(Struct, frozen=True):
    """A code in one quarter, as the console and `catalog lookup` show it."""

    quarter: str
    code: str
    description: str
    billing_unit: str
    limit: Decimal | None
    ndc: str | None = None  # when looked up by NDC: that NDC's package there
    package: str | None = None
    names: tuple[str, ...] = ()


def lookup(partb: PartB, query: str) -> tuple[str, list[Row]]:
    """(what the query was read as, rows by quarter) for an NDC, a HCPCS/CPT code or a drug name."""
    query = query.strip()
    forms = [f for f in ndc.candidates(query) if partb.has_ndc(f)]
    if forms:
        return f"NDC {', '.join(ndc.hyphenated(f) for f in forms)}", [
            row for f in forms for row in ndc_rows(partb, f)]
    if CODE.fullmatch(query):
        return f"code {query.upper()}", code_rows(partb, query.upper())
    found = partb.name_match(query)
    if found is None:
        return f"name {query!r}", []
    words, values = found
    rows = [row for code, quarters in values for row in code_rows(partb, code, set(bits(quarters)))]
    return f"name '{' '.join(words)}'", sorted(rows, key=lambda r: (r.quarter, r.code))


def ndc_rows(partb: PartB, ndc11: str) -> list[Row]:
    out = []
    for run in partb.runs(ndc11):
        for i in range(run.first, run.last + 1):
            for p in run.packages:
                info = partb.code(p.code, i)
                per_item = units_per_item(p)
                package = (f"{p.name}, {p.labeler}: package of {p.quantity or '?'} x {p.size or '?'}, "
                           f"{plain(per_item) if per_item else '?'} billing units per item")
                out.append(Row(partb.quarters[i].id, p.code, info.description if info else "",
                               info.dosage if info else p.name, info.limit if info else None,
                               ndc.hyphenated(ndc11), package))
    return out


def plain(value: Decimal) -> str:
    """200, not 2E+2."""
    return format(value.normalize(), "f")


def code_rows(partb: PartB, code: str, only: set[int] | None = None) -> list[Row]:
    drug_names: dict[int, set[str]] = {}
    for run, package in partb.ndcs_of(code):
        for i in range(run.first, run.last + 1):
            drug_names.setdefault(i, set()).add(package.name)
    return [Row(partb.quarters[i].id, code, info.description, info.dosage, info.limit,
                names=tuple(sorted(drug_names.get(i, ()))))
            for i in partb.listed_in(code) if only is None or i in only
            for info in (partb.quarters[i].codes[code],)]


def lookup_lines(partb: PartB, query: str) -> Iterator[str]:
    read_as, rows = lookup(partb, query)
    if not rows:
        return
    yield f"{query}: {read_as}"
    for row in rows:
        limit = f"${row.limit:,.3f} per unit" if row.limit is not None else "no payment limit"
        yield f"  {quarter_label(row.quarter)}  {row.code}  {row.description}  per {row.billing_unit}  {limit}"
        if row.package:
            yield f"      {row.package}"
        if row.names:
            yield f"      {', '.join(row.names[:8])}{' ...' if len(row.names) > 8 else ''}"
