"""Reading an export: which files, which lines, and why a line is not used; the staging file by patient."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cds_service.audit.export import Line, Problem, classify, find_files, lines
from cds_service.audit.partition import StagingReader, StagingWriter


def encounter(eid: str, patient: str) -> bytes:
    return json.dumps({"resourceType": "Encounter", "id": eid, "subject": {"reference": patient}}).encode()


@pytest.mark.parametrize(("data", "expected"), [
    (b"   \n", None),
    (b'{"resourceType": "Encounter", "id": "e1", "status": "fin',
     Problem("not valid JSON: Unterminated string starting at at column 53")),
    (b"[1, 2]", Problem("not a JSON object but list")),
    (b'"Encounter"', Problem("not a JSON object but str")),
    (b'{"id": "x"}', Problem("no resourceType")),
    (b'{"resourceType": 7}', Problem("no resourceType")),
    (b"\xff\xfe{}", Problem("not UTF-8 text")),
    (b'{"resourceType": "Condition", "note": ' + b"[" * 5000 + b"]" * 5000 + b"}",
     Problem("nested deeper than 100 levels")),
    (b'{"resourceType": "Condition", "note": ' + b"[" * 150 + b"]" * 150 + b"}",
     Problem("nested deeper than 100 levels")),
    (b'{"resourceType": "Patient", "id": "p1"}', None),  # a type the audit does not read
    (b'{"resourceType": "MedicationRequest", "subject": {"reference": "Patient/p1"}}', None),  # read, not kept
    (b'{"resourceType": "Encounter", "subject": {"reference": "Patient/p1"}}',
     Problem("Encounter without an id cannot be referenced")),
    (b'{"resourceType": "Medication", "code": {"text": "B12"}}',
     Problem("Medication without an id cannot be referenced")),
    (b'{"resourceType": "Condition", "id": "c1"}', Problem("Condition without a Patient reference in subject")),
    (b'{"resourceType": "ChargeItem", "id": "c1", "subject": {"reference": "Group/g1"}}',
     Problem("ChargeItem without a Patient reference in subject")),
    (b'{"resourceType": "Coverage", "id": "v1", "subject": {"reference": "Patient/p1"}}',
     Problem("Coverage without a Patient reference in beneficiary")),
])
def test_classify_says_why_a_line_is_not_used(data: bytes, expected: Problem | None) -> None:
    assert classify(data) == expected


def test_classify_files_a_line_under_its_patient_or_its_own_id() -> None:
    assert classify(encounter("e1", "https://ehr.example/fhir/Patient/p-7/_history/2") + b"\r\n") == Line(
        "Encounter", "p-7", encounter("e1", "https://ehr.example/fhir/Patient/p-7/_history/2").decode())
    coverage = b'\xef\xbb\xbf{"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p1"}}'
    assert classify(coverage) == Line("Coverage", "p1", coverage.decode("utf-8-sig"))
    assert classify(b'{"resourceType": "Medication", "id": "m1"}') == Line(
        "Medication", "m1", '{"resourceType": "Medication", "id": "m1"}')


def test_files_are_found_by_suffix_in_name_order_leaving_out_the_report(tmp_path: Path) -> None:
    for name in ("b/Encounter.001.ndjson", "Encounter.ndjson.gz", "a.ndjson", "notes.txt", "report/x.ndjson",
                 "Encounter.ndjson.bak"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = find_files(tmp_path, exclude=tmp_path / "report")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["Encounter.ndjson.gz", "a.ndjson",
                                                                   "b/Encounter.001.ndjson"]


def test_lines_of_plain_and_gzip_files_and_a_truncated_gzip(tmp_path: Path) -> None:
    body = b"".join(encounter(f"e{n}", "Patient/p1") + b"\n" for n in range(3))
    (tmp_path / "a.ndjson").write_bytes(body)
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(body))
    (tmp_path / "c.ndjson.gz").write_bytes(gzip.compress(body)[:-12])
    read: list[int] = []
    assert [n for n, _ in lines(tmp_path / "a.ndjson", read.append)] == [1, 2, 3]
    assert sum(read) == len(body)
    assert list(lines(tmp_path / "b.ndjson.gz")) == [(n + 1, line + b"\n") for n, line in enumerate(body.splitlines())]
    *good, last = lines(tmp_path / "c.ndjson.gz")
    assert [n for n, _ in good] == [1, 2]  # the third line is cut short
    assert last == (3, Problem("the file cannot be read past this line: EOFError"))


def test_the_staging_file_gives_each_patient_its_lines_in_file_order(tmp_path: Path) -> None:
    writer = StagingWriter(tmp_path / "stage.sqlite")
    medication = b'{"resourceType": "Medication", "id": "m"}'
    for file, number, data in [(1, 4, encounter("e2", "Patient/b")), (0, 9, encounter("e1", "Patient/a")),
                               (0, 2, encounter("e3", "Patient/b")), (0, 1, medication),
                               (1, 1, medication.replace(b"}", b', "status": "inactive"}'))]:
        line = classify(data)
        assert isinstance(line, Line)
        writer.add(line, file, number)
    assert writer.finish() == 3
    reader = StagingReader(tmp_path / "stage.sqlite")
    try:
        assert reader.patient_count() == 2
        assert reader.ranges(1) == [("a", "a"), ("b", "b")]
        assert reader.ranges(5) == [("a", "b")]
        by_patient = {p: [(s.file, s.line) for s in stored] for p, stored in reader.patients("a", "b")}
        assert by_patient == {"a": [(0, 9)], "b": [(0, 2), (1, 4)]}
        staged = reader.medication("m")
        assert staged is not None and (staged.file, staged.line) == (0, 1)  # the first of an id wins
        assert reader.medication("nope") is None
    finally:
        reader.close()
