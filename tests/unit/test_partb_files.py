"""CMS's Part B files as downloaded: read, checked line by line, refused whole with the line and the reason.

The rows are CMS's own (2025 Q3 and 2024 Q1 files, as tests/fixtures/cms holds a few lines of them)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from cds_service.partb import files, ndc
from cds_service.units import parse_dosage

CROSSWALK_HEAD = (
    "July 2025 ASP NDC - HCPCS Crosswalk for Medicare Part B Drugs,,,,,,,,,,\n"
    '"     Effective July 1, 2025 through September 30, 2025",,,,,,,,,,\n'
    ",,,,,,,,,,\n"
    "The ASP crosswalks are maintained by the Division of Data Analysis and Market Based Pricing.,,,,,,,,,,\n"
    ",,,,,,,,,,\n,,,,,,,,,,\n,,,,,,,,,,\n,,,,,,,,,,\n"
    "_2025_CODE,Short Description,LABELER NAME,NDC2,Drug Name,HCPCS dosage,PKG SIZE,PKG QTY,BILLUNITS,BILLUNITSPKG,\n"
)
CROSSWALK_ROWS = (
    'J1010,"Inj, methylpred acetate 1 mg",Pfizer Inc,00009-0280-02,Depo-Medrol,1 MG,5,1,200,200,\n'
    "J3420,Vitamin b12 injection,Hikma Pharmaceuticals USA Inc.,00143-9619-10,Cyanocobalamin,1000 MCG,30,10,30,300,\n"
    'J9041,"Injection, bortezomib, 0.1mg",Hikma Pharmaceuticals USA Inc.,00143-9098-01,Bortezomib,0.1 mg,1,1,35,35,\n'
)
LIMITS = (
    "Payment Allowance Limits for Medicare Part B Drugs,,,,,,,,,,\n,,,,,,,,,,\n"
    '"Effective July 1, 2025 through September 30, 2025",,,,,,,,,,\n'
    ",,,,,,,,,,\n"
    "Note 1: Payment allowance limits subject to the ASP methodology are based on 1Q25 ASP data.,,,,,,,,,,\n"
    ",,,,,,,,,,\n,,,,,,,,,,\n,,,,,,,,,,\n"
    "HCPCS Code,Short Description,HCPCS Code Dosage,Payment Limit,Co-insurance Percentage,Vaccine AWP%,"
    "Vaccine Limit,Blood AWP%,Blood limit,Clotting Factor,Notes\n"
    '90656,IIV3 VACC NO PRSV 0.5 ML IM,0.5 ML,22.350,0.000,95,22.350,,,,"see the Seasonal Influenza page"\n'
    'J1010,"Inj, methylpred acetate 1 mg",1 MG,0.120,20.000,,,,,,\n'
    "J3420,Vitamin b12 injection,1000 MCG,0.947,20.000,,,,,,\n"
    "A9606,Radium ra223 dichloride ther,1 microCurie,N/A,20.000,,,,,,\n"
)


def cms_file(name: str, text: str, encoding: str = "latin-1") -> files.CmsFile:
    return files.CmsFile(name, text.encode(encoding))


def quarter(crosswalk: str = CROSSWALK_HEAD + CROSSWALK_ROWS, limits: str = LIMITS) -> files.QuarterData:
    return files.read_quarter([cms_file("crosswalk.csv", crosswalk), cms_file("limits.csv", limits)])


def test_a_quarter_reads_both_files_with_their_dates_codes_and_packages() -> None:
    data = quarter()
    assert (data.quarter, data.start, data.end) == ("2025q3", "2025-07-01", "2025-09-30")
    codes = {c.code: c for c in data.codes}
    assert sorted(codes) == ["90656", "A9606", "J1010", "J3420", "J9041"]
    assert (codes["J1010"].dosage, codes["J1010"].limit) == ("1 MG", "0.120")
    assert codes["A9606"].limit is None  # 'N/A'
    assert codes["J9041"].limit is None  # crosswalk only: no payment limit given
    depo = next(r for r in data.ndcs if r.code == "J1010")
    assert (depo.ndc, depo.name, depo.pkg_size, depo.pkg_qty, depo.units, depo.units_pkg) == (
        "00009028002", "Depo-Medrol", "5", "1", "200", "200")
    assert data.has_crosswalk and data.has_limits


def test_the_first_quarters_header_names_the_year_before_and_is_still_a_crosswalk() -> None:
    head = CROSSWALK_HEAD.replace("_2025_CODE", "_2023_CODE").replace(
        "July 1, 2025 through September 30, 2025", "January 1, 2024 through March 31, 2024")
    data = files.read_quarter([cms_file("2024q1.csv", head + CROSSWALK_ROWS)])
    assert data.quarter == "2024q1" and data.has_crosswalk and not data.has_limits


def test_a_utf8_file_with_a_byte_order_mark_reads_as_latin1_does() -> None:
    text = CROSSWALK_HEAD + CROSSWALK_ROWS.replace("Pfizer Inc", "Pfizer Ré")
    as_utf8 = files.read_quarter([files.CmsFile("u.csv", b"\xef\xbb\xbf" + text.encode("utf-8"))])
    as_latin1 = files.read_quarter([cms_file("l.csv", text)])
    assert as_utf8.ndcs == as_latin1.ndcs


def test_a_doubtful_package_number_is_kept_as_unknown() -> None:
    rows = CROSSWALK_ROWS.replace("30,10,30,300", "30,10,21.3125?,300")  # as CMS wrote one in 2024 Q2
    data = quarter(CROSSWALK_HEAD + rows)
    b12 = next(r for r in data.ndcs if r.code == "J3420")
    assert (b12.units, b12.units_pkg) == (None, "300")


@pytest.mark.parametrize(("text", "where", "reason"), [
    (CROSSWALK_HEAD.replace("NDC2", "NDC"), "crosswalk.csv, line 9",
     "wrong header: column 4 is 'NDC', expected 'NDC2'"),
    (CROSSWALK_HEAD + CROSSWALK_ROWS + "J10X0,Bad code,Pfizer,00009-0280-02,X,1 MG,5,1,200,200,\n",
     "crosswalk.csv, line 13", "bad code 'J10X0': not a HCPCS or CPT code"),
    (CROSSWALK_HEAD + CROSSWALK_ROWS.replace("1 MG,5,1,200", "1 FURLONG,5,1,200"), "crosswalk.csv, line 10",
     "bad billing unit '1 FURLONG'"),
    (CROSSWALK_HEAD + CROSSWALK_ROWS.replace("1000 MCG,30", ",30"), "crosswalk.csv, line 11",
     "bad billing unit '': empty"),
    (CROSSWALK_HEAD + CROSSWALK_ROWS.replace("1 MG,5,1,200", "0 MG,5,1,200"), "crosswalk.csv, line 10",
     "the amount is zero"),
    (CROSSWALK_HEAD + CROSSWALK_ROWS.replace("5,1,200,200", "five,1,200,200"), "crosswalk.csv, line 10",
     "bad package size 'five': not a number"),
    (CROSSWALK_HEAD.replace("Effective July 1, 2025 through September 30, 2025", "Effective soon"), "crosswalk.csv",
     "no 'Effective <date> through <date>' line before the header"),
    ("just,some,csv\n1,2,3\n", "crosswalk.csv", "no header"),
    (CROSSWALK_HEAD, "crosswalk.csv", "no rows after the header"),
])
def test_a_malformed_file_is_refused_with_its_line_and_reason(text: str, where: str, reason: str) -> None:
    with pytest.raises(files.CmsFileError) as refused:
        files.read_quarter([cms_file("crosswalk.csv", text)])
    assert str(refused.value).startswith(f"{where}: ")
    assert reason in str(refused.value)


def test_a_bad_payment_limit_is_refused() -> None:
    with pytest.raises(files.CmsFileError, match=r"limits.csv, line 11: bad payment limit '0,12O'"):
        quarter(limits=LIMITS.replace('1 MG,0.120', '1 MG,"0,12O"'))


def test_files_of_two_quarters_are_not_one_quarter() -> None:
    other = LIMITS.replace("July 1, 2025 through September 30, 2025", "October 1, 2025 through December 31, 2025")
    with pytest.raises(files.CmsFileError, match="different quarters"):
        quarter(limits=other)


def test_every_real_file_reads_without_refusal() -> None:
    """All eighteen files CMS published for 2024 Q1 to 2026 Q1, as shipped in the reference folder."""
    reference = Path(__file__).resolve().parents[3] / "shared" / "reference" / "cms-part-b"
    if not reference.is_dir():
        pytest.skip("../shared/reference/cms-part-b is not beside this checkout")
    by_quarter: dict[str, list[files.CmsFile]] = {}
    for cms in files.open_files(sorted(reference.glob("*.csv"))):
        by_quarter.setdefault(cms.quarter, []).append(cms)
    assert sorted(by_quarter) == ["2024q1", "2024q2", "2024q3", "2024q4", "2025q1", "2025q2", "2025q3", "2025q4",
                                  "2026q1"]
    sizes = {q: len(files.read_quarter(group).ndcs) for q, group in by_quarter.items()}
    assert sizes["2024q1"] == 6684 and sizes["2026q1"] == 7125


# --- billing units as CMS writes them --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value", "unit"), [
    ("1000 MCG", "1000", "ug"), ("0.1 mg", "0.1", "mg"), ("1 ML", "1", "mL"), ("10 CC", "10", "mL"),
    ("1,000 UNITS", "1000", "U"), ("1 I.U. VWF:RCO", "1", "[iU]"), ("UP TO 1000 MG", "1000", "mg"),
    ("1 GM", "1", "g"), ("10 MG (rituximab)", "10", "mg"), ("PER DOSE", "1", "each"), ("1 EA", "1", "each"),
    ("Less than or equal to 100 MG", "1", "each"), ("PER FACTOR VIII IU", "1", "[iU]"),
    ("3 MG & 3 MG", "6", "mg"),  # J0702, Celestone Soluspan: 3 mg acetate and 3 mg phosphate in one unit
])
def test_billing_units_read(text: str, value: str, unit: str) -> None:
    dosage = parse_dosage(text)
    assert (dosage.value, dosage.unit, dosage.problem) == (Decimal(value), unit, None)


@pytest.mark.parametrize("text", ["200 MG/300 MG", "5 MG- 1MG", "2 MG - 3 MG"])
def test_a_combination_is_a_valid_unit_no_dose_divides(text: str) -> None:
    dosage = parse_dosage(text)
    assert dosage.problem is None and not dosage.computable


@pytest.mark.parametrize(("text", "problem"), [("", "empty"), ("1000", "an amount with no unit"),
                                                ("lots", "not an amount"), ("0 MG", "the amount is zero")])
def test_a_bad_billing_unit_says_why(text: str, problem: str) -> None:
    assert (parse_dosage(text).problem or "").startswith(problem)


# --- NDCs in every form --------------------------------------------------------------------------------

@pytest.mark.parametrize(("charted", "forms"), [
    ("00009-0280-02", ("00009028002",)),  # 5-4-2, CMS's form
    ("0009-0280-02", ("00009028002",)),  # 4-4-2
    ("63323-044-44", ("63323004444",)),  # 5-3-2
    ("00143-9098-1", ("00143909801",)),  # 5-4-1
    ("00009028002", ("00009028002",)),  # 11 digits
    ("0009028002", ("00009028002", "00090028002", "00090280002")),  # 10 digits: any of the three readings
    (" NDC:0009-0280-02 ", ("00009028002",)),
    ("0009-280-02", ()), ("J1010", ()), ("123", ()),
])
def test_ndc_forms(charted: str, forms: tuple[str, ...]) -> None:
    assert ndc.candidates(charted) == forms


def test_effective_dates_are_read_from_the_notes() -> None:
    cms = cms_file("x.csv", CROSSWALK_HEAD + CROSSWALK_ROWS)
    assert (cms.start, cms.end, cms.kind, cms.header_line) == (dt.date(2025, 7, 1), dt.date(2025, 9, 30),
                                                              "crosswalk", 9)


def test_a_line_number_counts_the_line_breaks_inside_quoted_cells() -> None:
    """CMS's crosswalks hold line breaks inside quoted descriptions (2024 Q4 and 2025 Q3 have eight each)."""
    rows = CROSSWALK_ROWS.replace('"Inj, methylpred acetate 1 mg"', '"Inj, methylpred\nacetate 1 mg"')
    rows += "J10X0,Bad code,Pfizer,00009-0280-02,X,1 MG,5,1,200,200,\n"
    with pytest.raises(files.CmsFileError, match=r"crosswalk.csv, line 14: bad code 'J10X0'"):
        files.read_quarter([cms_file("crosswalk.csv", CROSSWALK_HEAD + rows)])
