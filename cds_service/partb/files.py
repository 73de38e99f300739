"""CMS's quarterly Medicare Part B drug files, read as downloaded and checked row by row.

Two files make a quarter: the ASP NDC-HCPCS crosswalk (per NDC: the HCPCS code in force, its billing unit
and the package's billable units) and the payment allowance limits (per HCPCS code: billing unit and
Medicare's payment limit per unit; vaccine CPT codes are only here). Each opens with lines of title and
notes, one of which gives the dates the file is in force. A file with a wrong header, a bad code or a bad
billing unit is refused whole, with its line and the reason: a half-read quarter would bill wrongly.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

from cds_service.partb.model import CodeRow, NdcRow, QuarterData, quarter_id
from cds_service.units import parse_dosage

CROSSWALK_HEADER = ("CODE", "Short Description", "LABELER NAME", "NDC2", "Drug Name", "HCPCS dosage",
                    "PKG SIZE", "PKG QTY", "BILLUNITS", "BILLUNITSPKG")
LIMITS_HEADER = ("HCPCS Code", "Short Description", "HCPCS Code Dosage", "Payment Limit")
HEADER_SEARCH_LINES = 30
# CPT (five digits, or four and F/T/U) and HCPCS Level II (a letter and four digits).
CODE = re.compile(r"[A-Z]\d{4}|\d{4}[0-9A-Z]")
NUMBER = re.compile(r"\d[\d,]*(\.\d+)?|\.\d+")
QUESTIONED = re.compile(r"(\d[\d,]*(\.\d+)?|\.\d+)\s*\?")  # "21.3125?": a value CMS itself marks as doubtful
NO_VALUE = {"", "N/A", "NA", "-"}
EFFECTIVE = re.compile(
    r"effective\s+([A-Za-z]+\s+\d{1,2},?\s+\d{4})\s+(?:through|to|-)\s+([A-Za-z]+\s+\d{1,2},?\s+\d{4})", re.IGNORECASE
)
NDC_PACKED = re.compile(r"\d{5}-\d{4}-\d{2}|\d{11}")


class CmsFileError(Exception):
    """A CMS file that cannot be used; says which file, which line and why."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        self.file, self.line, self.reason = file, line, reason
        where = f"{file}, line {line}" if line else file
        super().__init__(f"{where}: {reason}")


class CmsFile:
    """One CMS file: its kind, the quarter it is in force for, and its rows as (line number, cells)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.sha256 = hashlib.sha256(data).hexdigest()
        lines = physical_lines(decode(data))
        rows = [row for _, row in lines]
        self.kind, header = find_header(name, rows)
        self.header_line = lines[header - 1][0]
        self.start, self.end = effective_dates(name, rows[: header - 1])
        self.quarter = quarter_id(self.start)
        self.rows = [(n, row) for n, row in lines[header:] if any(cell.strip() for cell in row)]
        if not self.rows:
            raise CmsFileError(name, None, "no rows after the header: CMS's files list hundreds of codes")


def physical_lines(text: str) -> list[tuple[int, list[str]]]:
    """(line in the file where the record starts, cells): a quoted cell may hold a line break (CMS's do)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    out, start = [], 1
    for row in reader:
        out.append((start, row))
        start = reader.line_num + 1
    return out


def decode(data: bytes) -> str:
    """UTF-8 where it is (with or without a byte-order mark), else Latin-1, as CMS writes its files."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def find_header(name: str, rows: list[list[str]]) -> tuple[str, int]:
    """The file's kind and the 1-based record number of its header, checked column by column (the title and
    notes above it hold no line break, so it is its line too)."""
    for n, row in enumerate(rows[:HEADER_SEARCH_LINES], 1):
        first = row[0].strip() if row else ""
        if re.fullmatch(r"_?\d{4}_CODE", first, re.IGNORECASE):
            check_columns(name, n, row, CROSSWALK_HEADER, skip_first=True)
            return "crosswalk", n
        if first.lower() == "hcpcs code":
            check_columns(name, n, row, LIMITS_HEADER)
            return "payment-limits", n
    raise CmsFileError(name, None, "no header: expected '_YYYY_CODE,Short Description,...' (NDC-HCPCS crosswalk) "
                       f"or 'HCPCS Code,Short Description,...' (payment limits) within the first {HEADER_SEARCH_LINES}"
                       " lines")


def check_columns(name: str, line: int, row: list[str], expected: tuple[str, ...], skip_first: bool = False) -> None:
    cells = [cell.strip() for cell in row]
    for i, wanted in enumerate(expected):
        if skip_first and i == 0:
            continue
        found = cells[i] if i < len(cells) else ""
        if found.lower() != wanted.lower():
            raise CmsFileError(name, line, f"wrong header: column {i + 1} is '{found}', expected '{wanted}'")


def effective_dates(name: str, preamble: list[list[str]]) -> tuple[dt.date, dt.date]:
    """The 'Effective <date> through <date>' line: the quarter the file is in force for."""
    for row in preamble:
        found = EFFECTIVE.search(" ".join(row))
        if found:
            start, end = (parse_date(name, text) for text in found.groups())
            if start.day != 1 or start.month not in (1, 4, 7, 10) or end < start:
                raise CmsFileError(name, None, f"effective dates {found.group(0)!r} are not a calendar quarter")
            return start, end
    raise CmsFileError(name, None, "no 'Effective <date> through <date>' line before the header")


def parse_date(name: str, text: str) -> dt.date:
    words = " ".join(text.replace(",", " ").split())
    for pattern in ("%B %d %Y", "%b %d %Y"):
        try:
            return dt.datetime.strptime(words, pattern).date()
        except ValueError:
            pass
    raise CmsFileError(name, None, f"effective date {text!r} is not a date")


def cell(row: list[str], i: int) -> str:
    return " ".join(row[i].split()) if i < len(row) else ""


def code_of(file: CmsFile, line: int, row: list[str]) -> str:
    code = cell(row, 0).upper()
    if not CODE.fullmatch(code):
        raise CmsFileError(file.name, line, f"bad code {cell(row, 0)!r}: not a HCPCS or CPT code")
    return code


def dosage_of(file: CmsFile, line: int, row: list[str], i: int) -> str:
    dosage = cell(row, i)
    problem = parse_dosage(dosage).problem
    if problem:
        raise CmsFileError(file.name, line, f"bad billing unit {dosage!r}: {problem}")
    return dosage


def amount(file: CmsFile, line: int, row: list[str], i: int, what: str) -> str | None:
    """A decimal as text; None where CMS gives none ('N/A', blank) or marks it doubtful ('21.3125?')."""
    value = cell(row, i)
    if value.upper() in NO_VALUE or QUESTIONED.fullmatch(value):
        return None
    if not NUMBER.fullmatch(value):
        raise CmsFileError(file.name, line, f"bad {what} {value!r}: not a number")
    return value.replace(",", "")


def normal_ndc(text: str) -> str:
    """An NDC in CMS's 5-4-2 form as its 11 digits; any other product identifier as written."""
    return text.replace("-", "") if NDC_PACKED.fullmatch(text) else text


def crosswalk_rows(file: CmsFile) -> Iterator[tuple[NdcRow, str]]:
    """(row, short description) for each line of a crosswalk."""
    for line, row in file.rows:
        code = code_of(file, line, row)
        ndc = cell(row, 3)
        if not ndc:
            raise CmsFileError(file.name, line, "no NDC")
        yield NdcRow(
            ndc=normal_ndc(ndc),
            code=code,
            labeler=cell(row, 2),
            name=cell(row, 4),
            dosage=dosage_of(file, line, row, 5),
            pkg_size=amount(file, line, row, 6, "package size"),
            pkg_qty=amount(file, line, row, 7, "package quantity"),
            units=amount(file, line, row, 8, "billable units"),
            units_pkg=amount(file, line, row, 9, "billable units per package"),
        ), cell(row, 1)


def limit_rows(file: CmsFile) -> Iterator[CodeRow]:
    for line, row in file.rows:
        yield CodeRow(
            code=code_of(file, line, row),
            description=cell(row, 1),
            dosage=dosage_of(file, line, row, 2),
            limit=amount(file, line, row, 3, "payment limit"),
            priced=True,
        )


def read_quarter(files: list[CmsFile]) -> QuarterData:
    """One quarter from its crosswalk and payment-limit files (either may be missing, not both)."""
    quarters = {f.quarter for f in files}
    if len(quarters) != 1:
        raise CmsFileError(", ".join(f.name for f in files), None, "these files are for different quarters")
    kinds = [f.kind for f in files]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            raise CmsFileError(", ".join(f.name for f in files if f.kind == kind), None,
                               f"two {kind} files for {files[0].quarter}")
    codes: dict[str, CodeRow] = {}
    ndcs: list[NdcRow] = []
    for file in sorted(files, key=lambda f: f.kind):  # the crosswalk first; payment limits override
        if file.kind == "crosswalk":
            for ndc_row, description in crosswalk_rows(file):
                ndcs.append(ndc_row)
                codes.setdefault(ndc_row.code, CodeRow(ndc_row.code, description, ndc_row.dosage, None, False))
        else:
            for code_row in limit_rows(file):
                codes[code_row.code] = code_row
    first = files[0]
    return QuarterData(
        quarter=first.quarter,
        start=first.start.isoformat(),
        end=first.end.isoformat(),
        sources=tuple(sorted(f"{f.kind}:{f.name}:{f.sha256}" for f in files)),
        has_crosswalk="crosswalk" in kinds,
        has_limits="payment-limits" in kinds,
        codes=tuple(sorted(codes.values(), key=lambda c: c.code)),
        ndcs=tuple(ndcs),
    )


def open_files(paths: list[Path]) -> list[CmsFile]:
    """Read CSV files, and the CSV files inside ZIP archives, as CMS publishes them."""
    import zipfile

    out = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CmsFileError(str(path), None, f"cannot read: {exc.strerror}") from None
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
                if not members:
                    raise CmsFileError(str(path), None, "the archive holds no .csv file")
                out += [CmsFile(f"{path.name}:{m}", archive.read(m)) for m in members]
        else:
            out.append(CmsFile(path.name, data))
    return out
