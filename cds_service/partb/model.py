"""One quarter of CMS's Part B drug files, as stored: the rows CMS gives, checked, with nothing derived."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from msgspec import Struct

FORMAT = 2  # of the stored quarter files and index; a reader refuses another


class CodeRow(Struct, array_like=True, frozen=True):
    """A HCPCS or CPT code: its short description, billing unit ('HCPCS dosage') and Medicare's payment
    limit per billing unit (None where CMS gives none); `priced` when the payment-limit file lists it (else
    only the crosswalk does)."""

    code: str
    description: str
    dosage: str
    limit: str | None
    priced: bool


class NdcRow(Struct, array_like=True, frozen=True):
    """One crosswalk line: an NDC (its 11 digits; other product identifiers as written) and the code it
    bills under, with the package: size of one item (mL for a liquid), items per package, billable units
    per item and per package."""

    ndc: str
    code: str
    labeler: str
    name: str
    dosage: str
    pkg_size: str | None
    pkg_qty: str | None
    units: str | None
    units_pkg: str | None


class QuarterData(Struct, frozen=True):
    quarter: str  # "2025q3"
    start: str  # ISO dates the files give
    end: str
    sources: tuple[str, ...]  # "kind:file name:sha256" of each file read
    has_crosswalk: bool
    has_limits: bool
    codes: tuple[CodeRow, ...]
    ndcs: tuple[NdcRow, ...]
    format: int = FORMAT


def quarter_id(day: dt.date) -> str:
    """The calendar quarter holding a date: '2025q3'."""
    return f"{day.year}q{(day.month - 1) // 3 + 1}"


def quarter_label(quarter: str) -> str:
    """'2025q3' -> '2025 Q3'."""
    return quarter.replace("q", " Q")


# --- the merged index: every loaded quarter, derived once (at import) and read at start-up -----------------

class Package(Struct, array_like=True, frozen=True, gc=False):
    """An NDC's package as the crosswalk gives it: the numbers as CMS wrote them, read when used."""

    ndc: str
    code: str
    name: str
    labeler: str
    size: str | None  # of one item: mL for a liquid
    quantity: str | None  # items per package
    units: str | None  # billable units per item
    units_pkg: str | None  # billable units per package


class Run(Struct, array_like=True, frozen=True, gc=False):
    """An NDC's packages, the same in each quarter from `first` to `last` (indexes of the loaded quarters)."""

    first: int
    last: int
    packages: tuple[Package, ...]


class Code(Struct, array_like=True, frozen=True, gc=False):
    """A code in one quarter: short description, billing unit as CMS writes it, and Medicare's payment
    limit per billing unit."""

    code: str
    description: str
    dosage: str
    limit: Decimal | None


class Quarter(Struct, array_like=True, frozen=True, gc=False):
    id: str
    start: dt.date
    end: dt.date
    codes: dict[str, Code]
    has_crosswalk: bool
    has_limits: bool
    ndc_count: int
    sources: tuple[str, ...]


class Index(Struct, frozen=True, gc=False):
    """The loaded quarters merged: what `PartB` reads, as `build.index` derives it from the quarters."""

    inputs: tuple[str, ...]  # "quarter:sha256" of each stored quarter file merged: a stale index is not used
    quarters: tuple[Quarter, ...]
    ndcs: dict[str, tuple[Run, ...]]
    successors: tuple[tuple[int, str, tuple[str, ...]], ...]  # (i, code, codes its NDCs bill in quarter i + 1)
    predecessors: tuple[tuple[int, str, tuple[str, ...]], ...]  # (i, code, codes its NDCs billed in i - 1)
    names: tuple[tuple[tuple[str, ...], tuple[tuple[str, int], ...]], ...]  # words -> (code, quarters as bits)
    labelers: dict[str, tuple[str, ...]]  # code -> distinctive words of its labelers' names
    format: int = FORMAT
