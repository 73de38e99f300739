"""`cds-service catalog import`: a quarter from CMS's files as downloaded is checked, stored and described,
or refused whole with the line and the reason, leaving the loaded quarters as they were."""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service import config, partb
from tests import cmsfiles
from tests.charts import NDC, administration, answer_charges, discharge, medication
from tests.conftest import DEFAULT_CONFIG
from tests.e2e.conftest import run_cli

Q2_START, Q2_END = dt.date(2026, 4, 1), dt.date(2026, 6, 30)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cms"


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    """default.yaml with its imported quarters kept in this test's own folder."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["store"]["url"] = f"sqlite:///{tmp_path}/cds.db"
    data["cms"] = {"quarters_dir": str(tmp_path / "quarters")}
    data["fhir"]["allowed_servers"].append("http://127.0.0.1:9/fhir")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def new_quarter(tmp_path: Path) -> tuple[Path, Path]:
    return cmsfiles.write(cmsfiles.quarter_2026q2(), tmp_path / "download", Q2_START, Q2_END)


def test_an_import_adds_the_quarter_and_prints_what_changed(configured: Path, new_quarter: tuple[Path, Path]) -> None:
    done = run_cli("catalog", "import", *map(str, new_quarter), "--config", str(configured))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "2026 Q2: added" in out and "against 2026 Q1:" in out
    assert "codes added: 2\n    + J0999  Inj, testamab, 1 mg  (1 MG)\n    + J1011" in out
    assert "codes dropped: 1\n    - J9041  Injection, bortezomib, 0.1mg" in out
    assert "billing units changed: 1\n    ~ J3425  10 MCG -> 100 MCG" in out
    assert "> J1010 -> J1011: 1 NDC(s): 00009-0280-02" in out
    settings = config.load(configured)
    assert settings.partb.ids[-2:] == ("2026q1", "2026q2")
    assert sorted(p.name for p in (configured.parent / "quarters").iterdir() if p.name.startswith("2026")) == [
        "2026q2.msgpack.gz"]
    listed = run_cli("catalog", "quarters", "--config", str(configured))
    assert "CMS Part B quarters loaded: 10 (2024 Q1 to 2026 Q2)" in listed.stdout
    checked = run_cli("check-config", str(configured))
    assert checked.returncode == 0 and "2026 Q2  2026-04-01 to 2026-06-30" in checked.stdout


def test_the_new_quarter_bills_its_own_codes_and_the_old_ones_stay(configured: Path,
                                                                   new_quarter: tuple[Path, Path]) -> None:
    assert run_cli("catalog", "import", *map(str, new_quarter), "--config", str(configured)).returncode == 0
    from cds_service import create_app

    client = create_app(str(configured)).test_client()

    def codes(day: str) -> set[tuple[str, float]]:
        body = discharge(day, [administration(1, medication((NDC, "00009-0280-02")), at=f"{day}T10:15:00-05:00",
                                              dose=(40, "mg"))])
        answer: dict[str, Any] = client.post("/cds-services/injection-billing-encounter-discharge", json=body).json
        return {(code, units) for _, code, units, _ in answer_charges(answer)}

    assert codes("2026-05-05") == {("96372", 1), ("J1011", 1)}
    assert codes("2026-02-05") == {("96372", 1), ("J1010", 40)}


def test_a_zip_as_cms_publishes_it_is_read(configured: Path, new_quarter: tuple[Path, Path], tmp_path: Path) -> None:
    archive = tmp_path / "april-2026-asp-files.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in new_quarter:
            zipped.write(path, f"April 2026/{path.name}")
    done = run_cli("catalog", "import", str(archive), "--config", str(configured))
    assert done.returncode == 0, done.stderr
    assert "2026 Q2: added" in done.stdout


@pytest.mark.parametrize(("change", "message"), [
    (("HCPCS dosage", "HCPCS DOSE"), "2026q2-crosswalk.csv, line 9: wrong header: column 6 is 'HCPCS DOSE'"),
    ((",J3420,", ",J34X0,"), "2026q2-crosswalk.csv, line 10: bad code 'J34X0': not a HCPCS or CPT code"),
    ((",1000 MCG,", ",1000 MCGS,"), "bad billing unit '1000 MCGS'"),
])
def test_a_malformed_file_is_refused_whole_and_nothing_changes(
    configured: Path, new_quarter: tuple[Path, Path], change: tuple[str, str], message: str,
) -> None:
    crosswalk, limits = new_quarter
    text = crosswalk.read_bytes().decode("latin-1")
    if change[0] == ",J3420,":  # the first data line's code
        lines = text.split("\r\n")
        lines[9] = lines[9].replace(lines[9].split(",")[0], "J34X0", 1)
        text = "\r\n".join(lines)
    else:
        text = text.replace(*change, 1)
    crosswalk.write_bytes(text.encode("latin-1"))
    before = run_cli("catalog", "quarters", "--config", str(configured)).stdout
    done = run_cli("catalog", "import", str(crosswalk), str(limits), "--config", str(configured))
    assert done.returncode == 2
    assert message in done.stderr, done.stderr
    assert "nothing was imported; the quarters loaded are as they were" in done.stderr
    assert not (configured.parent / "quarters").exists()
    assert run_cli("catalog", "quarters", "--config", str(configured)).stdout == before


def test_a_quarter_given_by_one_file_keeps_the_other_files_part(configured: Path,
                                                                new_quarter: tuple[Path, Path]) -> None:
    crosswalk, limits = new_quarter
    assert run_cli("catalog", "import", str(crosswalk), str(limits), "--config", str(configured)).returncode == 0
    again = run_cli("catalog", "import", str(limits), "--config", str(configured))
    assert again.returncode == 0, again.stderr
    assert "2026 Q2: replaced" in again.stdout and "no NDC-HCPCS crosswalk" not in again.stdout
    loaded = config.load(configured).partb
    assert loaded.quarters[-1].has_crosswalk and loaded.quarters[-1].ndc_count > 6000


def test_a_real_quarter_replaced_from_cms_files_reads_as_shipped(configured: Path, tmp_path: Path) -> None:
    """The 2024 Q1 sample (CMS's own lines, Latin-1, the '_2023_CODE' header) stored over the shipped quarter."""
    files = [shutil.copy(FIXTURES / f"2024q1-{kind}-sample.csv", tmp_path) for kind in ("crosswalk", "payment-limits")]
    done = run_cli("catalog", "import", *map(str, files), "--config", str(configured))
    assert done.returncode == 0, done.stderr
    assert "2024 Q1: replaced" in done.stdout and "the first quarter loaded" in done.stdout
    loaded = config.load(configured).partb
    first = loaded.quarters[0]
    assert first.id == "2024q1" and set(first.codes) >= {"J1030", "J1040", "J3420"}
    assert loaded.in_force("J1030", 5) == {"J1010"}  # the NDCs still move to J1010 in 2024 Q2


def test_lookup_by_ndc_code_and_name(configured: Path) -> None:
    by_ndc = run_cli("catalog", "lookup", "0009-0280-02", "--config", str(configured))
    assert by_ndc.returncode == 0
    assert "2024 Q1  J1030  Methylprednisolone 40 mg inj  per 40 MG  $6.419 per unit" in by_ndc.stdout
    assert "2026 Q1  J1010  Inj, methylpred acetate 1 mg  per 1 MG" in by_ndc.stdout
    by_code = run_cli("catalog", "lookup", "J9041", "--config", str(configured))
    assert "Bortezomib" in by_code.stdout and by_code.stdout.count("J9041") >= 9
    by_name = run_cli("catalog", "lookup", "Prolia", "--config", str(configured))
    assert "J0897" in by_name.stdout
    missing = run_cli("catalog", "lookup", "Unobtainium", "--config", str(configured))
    assert missing.returncode == 1 and "not in CMS's Part B files" in missing.stdout


def test_check_config_reports_a_code_or_unit_that_disagrees_with_cms(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["drugs"]["methylprednisolone-acetate"]["hcpcs"] = "J1030"
    data["drugs"]["cyanocobalamin"]["billing_unit"] = {"value": 100, "unit": "ug"}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    done = run_cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert ("warning: drugs/methylprednisolone-acetate/hcpcs: J1030 is not in CMS's files from 2024 Q2 on "
            "(its NDCs bill J1010)") in done.stdout
    assert "warning: drugs/cyanocobalamin/billing_unit: 100 ug for J3420, but CMS's 2024 Q1 files bill it per " \
           "1000 MCG" in done.stdout


def test_the_shipped_quarters_are_what_cmss_files_give(tmp_path: Path) -> None:
    """Rebuilding from the reference files gives the shipped quarters, row for row (when they are at hand)."""
    reference = Path(__file__).resolve().parents[3] / "shared" / "reference" / "cms-part-b"
    if not reference.is_dir():
        pytest.skip("../shared/reference/cms-part-b is not beside this checkout")
    done = run_cli("catalog", "import", *map(str, sorted(reference.glob("*.csv"))), "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for quarter in partb.load(None).ids:
        rebuilt = partb.stored.read_quarter(tmp_path / f"{quarter}.msgpack.gz")
        assert rebuilt == cmsfiles.shipped(quarter), quarter
