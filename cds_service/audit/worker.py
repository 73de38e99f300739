"""What one worker process does: audit ranges of patients read from the staging file (spawn-safe)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.audit import core
from cds_service.audit.partition import StagingReader, Stored
from cds_service.audit.tally import Skip
from cds_service.fhir import parse

MEDICATION_CACHE = 4096


@dataclass
class RangeResult:
    """One range of patients, audited: the rows in patient order and the counters for summary.json."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    seen: int = 0  # Encounters staged in the range, audited or not (the progress bar counts these)
    encounters: int = 0
    patients: int = 0
    administrations: int = 0
    flagged: list[tuple[str, list[tuple[str, int, tuple[str, ...]]]]] = field(default_factory=list)
    skips: list[tuple[Skip, bool]] = field(default_factory=list)  # (skip, shared line)


class CheckedMedications(Mapping[str, Mapping[str, Any]]):
    """`Medication/<id>` -> valid Medication JSON, checked when first read; an invalid one is a skip.

    Subclasses say where a Medication is kept (`stored`) and which there are (`ids`)."""

    def __init__(self) -> None:
        self.cache: dict[str, Mapping[str, Any] | None] = {}
        self.skips: list[Skip] = []

    def stored(self, medication_id: str) -> Stored | None:
        raise NotImplementedError

    def ids(self) -> Iterator[str]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        if key not in self.cache:
            if len(self.cache) >= MEDICATION_CACHE:
                self.cache.clear()
            stored = self.stored(key.split("/", 1)[1]) if key.startswith("Medication/") else None
            self.cache[key] = checked(stored, self.skips) if stored else None
        found = self.cache[key]
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return (f"Medication/{medication_id}" for medication_id in self.ids())

    def __len__(self) -> int:
        return sum(1 for _ in self.ids())


class StagedMedications(CheckedMedications):
    """The Medications of the staging file."""

    def __init__(self, reader: StagingReader) -> None:
        super().__init__()
        self.reader = reader

    def stored(self, medication_id: str) -> Stored | None:
        return self.reader.medication(medication_id)

    def ids(self) -> Iterator[str]:
        return (row[0] for row in self.reader.conn.execute("SELECT id FROM medications"))


@dataclass
class WorkerState:
    reader: StagingReader
    medications: StagedMedications
    engine: core.Engine
    since: dt.date | None
    until: dt.date | None


_state: WorkerState | None = None


def init_worker(staging: str, config: str, since: dt.date | None, until: dt.date | None) -> None:
    """Open the staging file read-only and load the configuration, once per process."""
    global _state
    reader = StagingReader(Path(staging))
    _state = WorkerState(reader, StagedMedications(reader), core.engine_for(config), since, until)


def close_worker() -> None:
    global _state
    if _state is not None:
        _state.reader.close()
        _state = None


def audit_range(bounds: tuple[str, str]) -> RangeResult:
    """Audit every patient from bounds[0] to bounds[1], in patient order."""
    assert _state is not None, "init_worker first"
    state, out = _state, RangeResult()
    for patient_id, stored in state.reader.patients(*bounds):
        skips: list[Skip] = []
        resources = [r for r in (checked(s, skips) for s in stored) if r is not None]
        out.seen += sum(1 for s in stored if s.resource_type == "Encounter")
        audited = audit_one(state, resources, stored, skips)
        out.rows += audited.rows
        out.encounters += audited.encounters
        out.patients += 1 if audited.encounters else 0
        out.administrations += audited.administrations
        if audited.flagged:
            out.flagged.append((patient_id, audited.flagged))
        out.skips += [(skip, False) for skip in skips]
    out.skips += [(skip, True) for skip in state.medications.skips]
    state.medications.skips.clear()
    return out


def audit_one(
    state: WorkerState, resources: list[dict[str, Any]], stored: list[Stored], skips: list[Skip]
) -> core.PatientAudit:
    """One patient; a failure is reported on the patient's first line, and the run goes on."""
    try:
        return core.audit(resources, state.medications, state.engine, since=state.since, until=state.until)
    except Exception as exc:  # noqa: BLE001 - a live call would answer 500 for this chart; the audit goes on
        first = stored[0]
        skips.append(Skip(first.file, first.line, f"this patient could not be audited: {type(exc).__name__}"))
        return core.PatientAudit()


def checked(stored: Stored, skips: list[Skip]) -> dict[str, Any] | None:
    """The line's resource when it is valid FHIR R4 (as parse.read reads it), else a skip."""
    data = json.loads(stored.body)
    scratch = parse.Resources()
    if parse.validate("export", data, scratch) is None:
        problems = "; ".join(scratch.invalid[0].problems) if scratch.invalid else "not readable"
        skips.append(Skip(stored.file, stored.line, f"invalid FHIR {stored.resource_type}: {problems}"))
        return None
    return dict(data)
