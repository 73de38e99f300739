"""The loaded quarters as a hook call asks them: read-only, each question a dict lookup or a walk over at
most the loaded quarters.

What CMS's files say, and how it is read here:
- A code is *listed* in a quarter when either file of that quarter names it.
- A code listed earlier, missing from a quarter and from every later one, was *dropped*: its NDCs bill
  under the codes they move to (J1030's under J1010 from 2024 Q2). A code missing from one quarter and
  listed again later was only not priced that quarter (J3425 in 2024 Q3), and stays in force.
- A code never listed (J3490, an unclassified drug) may still be valid: it is taken as given.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Literal

from msgspec import Struct

from cds_service.partb import names
from cds_service.partb.model import Code, Index, Package, Quarter, Run
from cds_service.units import Dosage, parse_dosage


class Pick(Struct, frozen=True, gc=False):
    """The quarter used for a date of service: the one holding it ("in"), else the last before it (the date
    is "after" the last quarter loaded, or in a "gap" between two), else the first ("before" it)."""

    index: int
    quarter: Quarter
    fit: Literal["in", "after", "before", "gap"]


def billing_unit(code: Code) -> Dosage:
    return parse_dosage(code.dosage)


def units_per_item(package: Package) -> Decimal | None:
    """Billable units in one item of the package (a vial, a syringe)."""
    if package.units and Decimal(package.units):
        return Decimal(package.units)
    if package.units_pkg and package.quantity and Decimal(package.quantity):
        return Decimal(package.units_pkg) / Decimal(package.quantity)
    return None


def units_per_ml(package: Package) -> Decimal | None:
    """Billable units in one mL, for a liquid whose item size is in mL."""
    per_item = units_per_item(package)
    return per_item / Decimal(package.size) if per_item and package.size and Decimal(package.size) else None


class PartB:
    """CMS's Part B drug files, quarter by quarter."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.quarters: tuple[Quarter, ...] = index.quarters
        self._starts = [q.start for q in self.quarters]
        listed: dict[str, list[int]] = defaultdict(list)
        for i, quarter in enumerate(self.quarters):
            for code in quarter.codes:
                listed[code].append(i)
        self._listed = {code: tuple(at) for code, at in listed.items()}
        # A quarter with only one of CMS's two files lists only part of the codes: missing from it says nothing.
        self._complete = [q.has_crosswalk and q.has_limits for q in self.quarters]
        self._ndc = index.ndcs
        self._successors = {(i, code): frozenset(to) for i, code, to in index.successors}
        self._predecessors = {(i, code): frozenset(to) for i, code, to in index.predecessors}
        by_first: dict[str, list[tuple[tuple[str, ...], tuple[tuple[str, int], ...]]]] = defaultdict(list)
        for words, values in index.names:
            by_first[words[0]].append((words, values))
        self._names = {first: tuple(sorted(found, key=lambda item: -len(item[0]))) for first, found in by_first.items()}
        self._labelers = {code: frozenset(words) for code, words in index.labelers.items()}

    def __bool__(self) -> bool:
        return bool(self.quarters)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(q.id for q in self.quarters)

    # --- quarters and codes -------------------------------------------------------------------------

    def pick(self, day: dt.date | None) -> Pick | None:
        """The quarter holding the date; past the last (or before the first) loaded one, that one."""
        if not self.quarters:
            return None
        if day is None:
            return Pick(len(self.quarters) - 1, self.quarters[-1], "after")
        i = bisect.bisect_right(self._starts, day) - 1
        if i < 0:
            return Pick(0, self.quarters[0], "before")
        quarter = self.quarters[i]
        if day <= quarter.end:
            return Pick(i, quarter, "in")
        return Pick(i, quarter, "after" if i == len(self.quarters) - 1 else "gap")

    def code(self, code: str, at: int) -> Code | None:
        return self.quarters[at].codes.get(code)

    def nearest_code(self, code: str, at: int) -> Code | None:
        """The code in the quarter, else in the nearest quarter that lists it (for its billing unit)."""
        listed = self._listed.get(code)
        if not listed:
            return None
        return self.quarters[min(listed, key=lambda i: (abs(i - at), i > at))].codes[code]

    def known(self, code: str) -> bool:
        """Listed in some loaded quarter."""
        return code in self._listed

    def listed_in(self, code: str) -> tuple[int, ...]:
        return self._listed.get(code, ())

    def dropped(self, code: str, at: int) -> bool:
        """Listed in an earlier quarter, and in none of the whole quarters from the next one to this one (nor after)."""
        seen = self._listed.get(code)
        return seen is not None and seen[-1] < at and all(self._complete[seen[-1] + 1:at + 1])

    def not_yet(self, code: str, at: int) -> bool:
        """First listed in a later quarter: not in force yet in this whole quarter (J1010 in 2024 Q1)."""
        seen = self._listed.get(code)
        return seen is not None and at < seen[0] and self._complete[at]

    def not_in_force(self, code: str, at: int) -> bool:
        """A code CMS's files list, but not in this quarter: dropped before it, or not listed yet. A code
        missing for a quarter between two listings (J3425 in 2024 Q3) was only not priced then: in force."""
        return self.dropped(code, at) or self.not_yet(code, at)

    def in_force(self, code: str, at: int) -> frozenset[str]:
        """The codes a code stands for in a quarter: itself, or what replaced it (or what it replaced)."""
        return frozenset(self._in_force(code, at, set()))

    def _in_force(self, code: str, at: int, seen: set[str]) -> set[str]:
        listed = self._listed.get(code)
        if not listed or code in seen:
            return {code}
        seen.add(code)
        if not self.not_in_force(code, at):
            return {code}  # listed, a quarter without a price between listings, or a quarter partly loaded
        if listed[-1] < at:  # dropped: follow where its NDCs went
            moved = self._successors.get((listed[-1], code), frozenset())
        else:  # not yet listed: what it replaced
            moved = self._predecessors.get((listed[0], code), frozenset())
        found: set[str] = set()
        for other in moved:
            found |= self._in_force(other, at, seen)
        return found or {code}

    def maker_specific(self, code: Code) -> bool:
        """The code's description names the labeler of its NDCs: it bills only that maker's product."""
        return bool(self._labelers.get(code.code, frozenset()) & set(names.TOKEN.findall(code.description.lower())))

    # --- NDCs -------------------------------------------------------------------------------------

    def has_ndc(self, ndc11: str) -> bool:
        return ndc11 in self._ndc

    def packages(self, ndc11: str, at: int) -> tuple[int, tuple[Package, ...]] | None:
        """(quarter index, packages) of an NDC in the quarter, else in the nearest quarter listing it."""
        runs = self._ndc.get(ndc11)
        if not runs:
            return None
        for run in runs:
            if run.first <= at <= run.last:
                return at, run.packages
        nearest = min(runs, key=lambda r: (min(abs(r.first - at), abs(r.last - at)), r.first > at))
        return (nearest.last if nearest.last < at else nearest.first), nearest.packages

    def runs(self, ndc11: str) -> tuple[Run, ...]:
        return self._ndc.get(ndc11, ())

    def ndcs_of(self, code: str) -> Iterator[tuple[Run, Package]]:
        """Every (run, package) billed under a code: for the console and the CLI, not for hook calls."""
        for runs in self._ndc.values():
            for run in runs:
                for p in run.packages:
                    if p.code == code:
                        yield run, p

    # --- names ------------------------------------------------------------------------------------

    def name_match(self, text: str) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]] | None:
        """(the name's words, (code, quarters as bits) pairs) of the drug name found in free text."""
        return names.find(self._names, text)

    def by_name(self, text: str, at: int) -> tuple[tuple[str, ...], frozenset[str]] | None:
        """(the name's words, the codes it bills under in the quarter) of the longest drug name the text starts with."""
        return next(iter(self.by_names(text, at)), None)

    def by_names(self, text: str, at: int) -> list[tuple[tuple[str, ...], frozenset[str]]]:
        """Every drug name the text starts with, longest first, with the codes it bills under in the quarter."""
        return [(name, self.codes_named(values, at)) for name, values in names.find_all(self._names, text)]

    def codes_named(self, values: tuple[tuple[str, int], ...], at: int) -> frozenset[str]:
        in_quarter = {code for code, quarters in values if quarters >> at & 1}
        if not in_quarter:  # named only in other quarters: the codes it had nearest, as they stand here
            nearest = min((abs(i - at), i) for _, quarters in values for i in bits(quarters))[1]
            in_quarter = {c for code, quarters in values if quarters >> nearest & 1 for c in self.in_force(code, at)}
        return frozenset(in_quarter)


def bits(mask: int) -> Iterator[int]:
    i = 0
    while mask:
        if mask & 1:
            yield i
        mask >>= 1
        i += 1
