"""cds-service audit over generated exports: the live service's cards, bad lines skipped, same answers however read.

The export comes from benchmarks/make_export.py. The live service is a real `cds-service serve`
process; each encounter goes to it as an encounter-discharge request that this file builds from the
NDJSON on its own (read_export / discharge_request), not with the audit's code.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cds_service import config
from cds_service.audit import core
from cds_service.cli import main
from cds_service.runtime import terms_of
from tests.conftest import DEFAULT_CONFIG, ROOT
from tests.e2e.conftest import new_session, run_cli, start_server

MAKE_EXPORT = ROOT / "benchmarks" / "make_export.py"
DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
# The codes of drug lines, as the service tells them: CMS's Part B files, the catalog, unclassified codes.
DRUG_CODES = terms_of(config.load(DEFAULT_CONFIG)).formulary.drug_codes
Key = tuple[str, str, str, str, str]  # (encounter, rule, card uuid, codes, drug units)


def make_export(out: Path, encounters: int, *options: str) -> Path:
    subprocess.run([sys.executable, str(MAKE_EXPORT), str(encounters), str(out), *options],
                   check=True, capture_output=True)
    return out


def audit(export: Path, out: Path, *options: str) -> dict[str, Any]:
    assert main(["audit", str(export), "--out", str(out), *options]) == 0
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def findings(out: Path) -> list[dict[str, str]]:
    with open(out / "findings.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def keys(rows: list[dict[str, str]]) -> list[Key]:
    return sorted((r["encounter_id"], r["rule_id"], r["card_uuid"], r["codes"], r["units"]) for r in rows)


@pytest.fixture(scope="module")
def export_1000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("export") / "plain", 1000, "--seed", "8")


@pytest.fixture(scope="module")
def audited_1000(export_1000: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit")
    audit(export_1000, out, "--workers", "2")
    return out


# --- the live service, fed from the NDJSON by this file's own reading of it ---------------------

def read_export(export: Path) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, dict[str, Any]]]:
    """Resources by patient and type, and Medications by 'Medication/<id>' (a test export fits in memory)."""
    patients: dict[str, dict[str, list[dict[str, Any]]]] = {}
    medications: dict[str, dict[str, Any]] = {}
    for path in sorted(export.iterdir()):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                resource = json.loads(line)
                if resource["resourceType"] == "Medication":
                    medications[f"Medication/{resource['id']}"] = resource
                    continue
                owner = resource.get("beneficiary") or resource["subject"]
                patient = owner["reference"].removeprefix("Patient/")
                patients.setdefault(patient, {}).setdefault(resource["resourceType"], []).append(resource)
    return patients, medications


def instant(value: str) -> dt.datetime | dt.date:
    return dt.date.fromisoformat(value) if len(value) == 10 else dt.datetime.fromisoformat(value)


def before_end(admin: dict[str, Any], enc: dict[str, Any]) -> bool:
    """Given by the end of the encounter: what its EHR could send at discharge."""
    when = instant(admin.get("effectiveDateTime") or admin["effectivePeriod"]["start"])
    end = instant(enc["period"]["end"])
    if isinstance(when, dt.datetime) and isinstance(end, dt.datetime):
        return when <= end
    return enc["period"]["end"][:10] >= (when.isoformat()[:10])


def bundle(resources: list[dict[str, Any]], included: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [
        *({"resource": r, "search": {"mode": "match"}} for r in sorted(resources, key=lambda r: r["id"])),
        *({"fullUrl": f"Medication/{m['id']}", "resource": m, "search": {"mode": "include"}} for m in included or []),
    ]}


def discharge_request(patient: str, chart: dict[str, list[dict[str, Any]]], enc: dict[str, Any],
                      medications: dict[str, dict[str, Any]]) -> dict[str, Any]:
    eid, day = enc["id"], enc["period"]["start"][:10]
    admins = [a for a in chart.get("MedicationAdministration", [])
              if a.get("context", {}).get("reference") == f"Encounter/{eid}" or before_end(a, enc)]
    refs = {a.get("medicationReference", {}).get("reference", "#") for a in admins}
    coverages = [c for c in chart.get("Coverage", []) if c["status"] == "active"
                 and c["period"]["start"] <= day and day <= c["period"].get("end", "9999")]
    return {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"audit:{eid}")),
        "context": {"userId": "Practitioner/auditor", "patientId": patient, "encounterId": eid},
        "prefetch": {
            "encounter": enc,
            "administrations": bundle(admins, [medications[r] for r in sorted(refs) if r in medications]),
            "conditions": bundle(chart.get("Condition", [])),
            "charges": bundle([c for c in chart.get("ChargeItem", [])
                               if c["context"]["reference"] == f"Encounter/{eid}"]),
            "coverage": bundle(coverages),
        },
        # The audit keeps every card; a live call without options cuts at hooks.max_cards (20).
        "extension": {"injection-billing.configuration": {"max-cards": 1000}},
    }


def discharge_requests(export: Path) -> Iterator[dict[str, Any]]:
    patients, medications = read_export(export)
    for patient, chart in patients.items():
        for enc in chart["Encounter"]:
            if enc["status"] not in ("planned", "cancelled", "entered-in-error"):
                yield discharge_request(patient, chart, enc, medications)


def card_key(encounter_id: str, card: dict[str, Any]) -> Key:
    actions = (card.get("suggestions") or [{}])[0].get("actions", [])
    charges = [a["resource"] for a in actions if a["type"] in ("create", "update")]
    codes = [c["code"]["coding"][0]["code"] for c in charges]
    drug = next((c for c, code in zip(charges, codes, strict=True) if code in DRUG_CODES), None)
    units = str(int(drug.get("quantity", {}).get("value", 1))) if drug else ""
    return encounter_id, card["source"]["topic"]["code"], card["uuid"], " ".join(codes), units


def test_the_audit_finds_what_the_live_service_answers_encounter_by_encounter(
    export_1000: Path, audited_1000: Path, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "serve", workers=2)
    try:
        requests = list(discharge_requests(export_1000))

        def post(body: dict[str, Any]) -> list[Key]:
            with new_session() as http:
                response = http.post(server.url(DISCHARGE), json=body, timeout=30)
            assert response.status_code == 200, response.text
            return [card_key(body["context"]["encounterId"], card) for card in response.json()["cards"]]

        with ThreadPoolExecutor(4) as pool:
            live = sorted(key for cards in pool.map(post, requests) for key in cards)
    finally:
        server.stop()
    audited = keys(findings(audited_1000))
    assert len(requests) == json.loads((audited_1000 / "summary.json").read_text())["encounters"] > 950
    assert len(audited) > 2000
    assert audited == live
    rules = {key[1] for key in audited}
    assert {"admin-96372", "admin-code-alternative", "frequency-exceeded", "same-day-em-modifier-25",
            "em-99211-bundled", "charge-units-mismatch", "charge-unsupported", "diagnosis-not-covered",
            "drug-waste-modifier", "route-uncoded", "dose-missing", "status-not-completed"} <= rules
    assert ("96372 J3420", "1") in {(key[3], key[4]) for key in audited if key[1] == "admin-96372"}


# --- bad lines -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("export") / "small", 150, "--seed", "3")


def test_malformed_lines_are_reported_with_file_and_line_and_the_rest_is_audited(
    small_export: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(small_export, broken)
    admins = (broken / "MedicationAdministration.ndjson").read_text().splitlines()
    bad_admin = json.loads(admins[4])
    bad_admin.pop("effectivePeriod", None)
    bad_admin["effectiveDateTime"] = "yesterday"  # not an R4 dateTime
    admins[4] = json.dumps(bad_admin)
    (broken / "MedicationAdministration.ndjson").write_text("\n".join(admins) + "\n")
    encounters = (broken / "Encounter.ndjson").read_text().splitlines()
    (broken / "Encounter.ndjson").write_text("\n".join([
        *encounters[:2], '{"resourceType": "Encounter", "id": "enc-cut", "status": "fini',
        "[1, 2, 3]", '{"id": "no-type"}', *encounters[2:],
    ]) + "\n")

    clean = audit(small_export, tmp_path / "clean", "--workers", "1")
    summary = audit(broken, tmp_path / "out", "--workers", "1")

    assert summary["skipped"]["count"] == 4
    lines = summary["skipped"]["lines"]
    assert [(s["file"], s["line"]) for s in lines] == [
        ("Encounter.ndjson", 3), ("Encounter.ndjson", 4), ("Encounter.ndjson", 5),
        ("MedicationAdministration.ndjson", 5),
    ]
    assert lines[0]["error"].startswith("not valid JSON: Unterminated string")
    assert lines[1]["error"] == "not a JSON object but list"
    assert lines[2]["error"] == "no resourceType"
    assert lines[3]["error"] == (
        "invalid FHIR MedicationAdministration: effectiveDateTime: Value error, DateTime value string does not"
        " match spec regex."
    )
    assert summary["encounters"] == clean["encounters"]
    patient = bad_admin["subject"]["reference"].removeprefix("Patient/")
    assert bad_admin["id"] in {r["admin_id"] for r in findings(tmp_path / "clean")}
    assert bad_admin["id"] not in {r["admin_id"] for r in findings(tmp_path / "out")}
    others = [r for r in findings(tmp_path / "clean") if r["patient_id"] != patient]
    assert [r for r in findings(tmp_path / "out") if r["patient_id"] != patient] == others


# --- however the export is cut --------------------------------------------------------------------

def test_gzip_and_several_files_per_type_give_the_same_findings_as_plain_files(
    small_export: Path, tmp_path: Path
) -> None:
    split = make_export(tmp_path / "split", 150, "--seed", "3", "--gzip", "--split", "3")
    names = {p.name for p in split.iterdir()}
    assert {"Encounter.ndjson.gz", "Encounter.001.ndjson.gz", "Encounter-2.ndjson.gz"} <= names
    (split / "Condition-2.ndjson.gz").rename(split / "output-17.ndjson.gz")  # the type is read from each line

    audit(small_export, tmp_path / "plain", "--workers", "1")
    summary = audit(split, tmp_path / "gz", "--workers", "2")

    assert summary["skipped"]["count"] == 0
    assert findings(tmp_path / "gz") == findings(tmp_path / "plain")
    assert len(findings(tmp_path / "plain")) > 300


def test_one_or_two_workers_write_the_same_findings_and_the_window_keeps_its_encounters(
    small_export: Path, tmp_path: Path
) -> None:
    whole = audit(small_export, tmp_path / "one", "--workers", "1")
    audit(small_export, tmp_path / "two", "--workers", "2")
    assert (tmp_path / "two" / "findings.csv").read_bytes() == (tmp_path / "one" / "findings.csv").read_bytes()

    window = audit(small_export, tmp_path / "window", "--since", "2025-03-01", "--until", "2025-05-31")
    encounters = map(json.loads, (small_export / "Encounter.ndjson").read_text().splitlines())
    starts = {enc["id"]: enc["period"]["start"][:10] for enc in encounters}
    inside = {eid for eid, day in starts.items() if "2025-03-01" <= day <= "2025-05-31"}
    rows = findings(tmp_path / "window")
    assert {r["encounter_id"] for r in rows} <= inside
    assert rows == [r for r in findings(tmp_path / "one") if r["encounter_id"] in inside]
    assert (window["since"], window["until"]) == ("2025-03-01", "2025-05-31")
    assert 0 < window["encounters"] < whole["encounters"]


# --- the command ----------------------------------------------------------------------------------

def test_the_command_prints_one_paragraph_and_writes_the_report(small_export: Path, tmp_path: Path) -> None:
    done = run_cli("audit", str(small_export), "--out", str(tmp_path / "out"), "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    assert done.stdout.startswith("Audited ") and "0 lines skipped" in done.stdout
    assert f"Report: {tmp_path / 'out'} (findings.csv, summary.json, report.html)." in done.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary) == [
        "generated_at", "export_dir", "config", "since", "until", "workers", "seconds", "encounters", "patients",
        "administrations", "findings", "by_rule", "by_month", "units_missed_by_drug", "part_b_limit_at_risk",
        "top_encounters", "skipped",
    ]
    assert summary["workers"] == 2 and summary["findings"] == len(findings(tmp_path / "out"))
    assert not list((tmp_path / "out").glob(".audit-staging-*"))
    # Part B drug payments at risk: per rule, the sum of findings.csv's part_b_limit, to the cent.
    rows = findings(tmp_path / "out")
    for rule, entry in summary["by_rule"].items():
        total = sum((Decimal(r["part_b_limit"]) for r in rows if r["rule_id"] == rule and r["part_b_limit"]),
                    Decimal("0.00"))
        assert Decimal(entry["part_b_limit"]) == total, rule
    assert Decimal(summary["by_rule"]["admin-96372"]["part_b_limit"]) > 0
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Part B drug payments at risk" in report and "not a payer's price" in report


def test_the_command_exits_2_with_a_message_for_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no NDJSON here")
    assert main(["audit", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no NDJSON files (*.ndjson, *.ndjson.gz)" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "empty"), "--out", str(tmp_path / "out"), "--since", "March"]) == 2
    assert "ISO dates" in capsys.readouterr().err
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("server: {port: nope}\n")
    assert main(["audit", str(tmp_path / "empty"), "--out", str(tmp_path / "out"), "--config", str(bad_config)]) == 2
    assert "port" in capsys.readouterr().err


def test_a_file_that_is_not_gzip_is_a_skipped_line_not_a_traceback(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Encounter.ndjson.gz").write_bytes(b"this is not gzip\n")
    (export / "Coverage.ndjson").write_bytes(b'{"resourceType": "Coverage"}\n\xff\xfe\n')
    done = run_cli("audit", str(export), "--out", str(tmp_path / "out"), "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Audited 0 encounters" in done.stdout and "3 lines skipped" in done.stdout
    lines = json.loads((tmp_path / "out" / "summary.json").read_text())["skipped"]["lines"]
    assert [(s["file"], s["line"]) for s in lines] == [("Coverage.ndjson", 1), ("Coverage.ndjson", 2),
                                                     ("Encounter.ndjson.gz", 1)]
    assert lines[0]["error"] == "Coverage without a Patient reference in beneficiary"
    assert lines[1]["error"] == "not UTF-8 text"
    assert lines[2]["error"] == "the file cannot be read past this line: BadGzipFile"


def test_a_patient_whose_audit_fails_is_reported_and_the_others_are_audited(
    small_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit(small_export, tmp_path / "before", "--workers", "1")
    victim = findings(tmp_path / "before")[0]["patient_id"]
    real = core.audit

    def failing(resources: list[dict[str, Any]], *args: Any, **kwargs: Any) -> core.PatientAudit:
        if any(r.get("subject", {}).get("reference") == f"Patient/{victim}" for r in resources):
            raise RuntimeError("a rule tripped over this chart")
        return real(resources, *args, **kwargs)

    monkeypatch.setattr(core, "audit", failing)
    summary = audit(small_export, tmp_path / "after", "--workers", "1")  # one worker: this process
    assert summary["skipped"]["count"] == 1
    assert summary["skipped"]["lines"][0]["error"] == "this patient could not be audited: RuntimeError"
    assert findings(tmp_path / "after") == [r for r in findings(tmp_path / "before") if r["patient_id"] != victim]


def test_the_generator_writes_the_same_bytes_for_the_same_seed(tmp_path: Path) -> None:
    first = make_export(tmp_path / "one", 120, "--seed", "4", "--gzip", "--split", "2")
    second = make_export(tmp_path / "two", 120, "--seed", "4", "--gzip", "--split", "2")
    other = make_export(tmp_path / "three", 120, "--seed", "5", "--gzip", "--split", "2")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)
    assert (first / "Encounter.ndjson.gz").read_bytes() != (other / "Encounter.ndjson.gz").read_bytes()
    encounters = [line for n in names if n.startswith("Encounter") for line in gzip.open(first / n).readlines()]
    assert len(encounters) == 120
