"""Read a FHIR Bulk Data export: every NDJSON file, plain or gzipped, one line at a time, never whole."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cds_service.fhir.parse import ref_key
from cds_service.jsontext import too_deep

SUFFIXES = (".ndjson", ".ndjson.gz")
# The reference that files each resource under its patient (Coverage names the insured as beneficiary).
PATIENT_FIELD = {
    "Encounter": "subject",
    "MedicationAdministration": "subject",
    "MedicationRequest": "subject",
    "Condition": "subject",
    "ChargeItem": "subject",
    "Coverage": "beneficiary",
}
READ_TYPES = frozenset({*PATIENT_FIELD, "Medication"})
# MedicationRequests are checked but not kept: encounter-discharge reads administrations, never orders.
KEPT_TYPES = frozenset(READ_TYPES - {"MedicationRequest"})
MAX_DEPTH = 100  # as the live service's server.max_json_depth default: deeper JSON is refused
PROGRESS_EVERY = 512  # lines between two reports of bytes read


@dataclass(frozen=True)
class Line:
    """One usable line: a resource of a type the audit reads, filed under its patient (or its id)."""

    resource_type: str
    key: str  # the patient id; for a Medication, its own id
    text: str


@dataclass(frozen=True)
class Problem:
    """A line that cannot be used, and why (no chart data in the reason)."""

    error: str


def find_files(export_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Every *.ndjson and *.ndjson.gz under the export directory, sorted; `exclude` is a folder to leave out."""
    found = []
    for path in export_dir.rglob("*"):
        if not path.name.endswith(SUFFIXES) or not path.is_file():
            continue
        if exclude is not None and path.resolve().is_relative_to(exclude.resolve()):
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(export_dir).as_posix())


def lines(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, bytes | Problem]]:
    """Yield (line number, raw line) of a file; a damaged gzip stream ends the file with one Problem."""
    with open(path, "rb") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
        reported = 0
        number = 0
        try:
            for number, data in enumerate(stream, start=1):
                yield number, data
                if on_bytes is not None and number % PROGRESS_EVERY == 0:
                    reported = report_bytes(raw, reported, on_bytes)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            yield number + 1, Problem(f"the file cannot be read past this line: {type(exc).__name__}")
        finally:
            if on_bytes is not None:
                report_bytes(raw, reported, on_bytes)
            stream.close()


def report_bytes(raw: IO[bytes], reported: int, on_bytes: Callable[[int], None]) -> int:
    position = raw.tell()
    if position > reported:
        on_bytes(position - reported)
    return position


def classify(data: bytes) -> Line | Problem | None:
    """A Line to keep, a Problem to report, or None for a blank line or a type the audit does not read."""
    try:
        text = data.decode("utf-8").strip().lstrip("\ufeff")
    except UnicodeDecodeError:
        return Problem("not UTF-8 text")
    if not text:
        return None
    try:
        resource = json.loads(text)
    except RecursionError:
        return Problem(f"nested deeper than {MAX_DEPTH} levels")
    except ValueError as exc:
        return Problem(f"not valid JSON: {exc_message(exc)}")
    if too_deep(resource, MAX_DEPTH):
        return Problem(f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(resource, dict):
        return Problem(f"not a JSON object but {type(resource).__name__}")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return Problem("no resourceType")
    if rtype not in READ_TYPES:
        return None
    if rtype == "Medication" or rtype == "Encounter":
        if not isinstance(resource.get("id"), str) or not resource["id"]:
            return Problem(f"{rtype} without an id cannot be referenced")
    key = resource["id"] if rtype == "Medication" else patient_of(resource)
    if key is None:
        return Problem(f"{rtype} without a Patient reference in {PATIENT_FIELD[rtype]}")
    if rtype not in KEPT_TYPES:
        return None
    return Line(rtype, key, text)


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The patient id a resource is filed under: Patient/<id> in subject, or beneficiary for Coverage."""
    field = PATIENT_FIELD.get(str(resource.get("resourceType")))
    reference = resource.get(field) if field else None
    value = reference.get("reference") if isinstance(reference, Mapping) else None
    key = ref_key(value) if isinstance(value, str) else None
    if not isinstance(key, str) or not key.startswith("Patient/") or key == "Patient/":
        return None
    return key.split("/", 1)[1]


def exc_message(exc: Exception) -> str:
    """The parser's complaint and position, never the line itself."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return type(exc).__name__
