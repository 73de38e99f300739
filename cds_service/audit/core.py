"""One patient's encounters, each audited as the live service answers encounter-discharge for it.

chart.py builds each encounter's prefetch from the patient's resources; this module reads it with
`fhir.gather` and evaluates it with `service.evaluate`, the two steps of a live call's `service.handle_hook`
(which adds what an audit has none of: a request body to check, a store to write, a max-cards cut), and
turns the cards into findings rows. The configuration (terms, card renderer) is built once per process.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cds_service import config as configuration
from cds_service import rules, runtime, service
from cds_service.audit.chart import Chart, audited_encounters, chart_of, given_in, local_date, prefetch
from cds_service.audit.findings import COLUMNS, row_of
from cds_service.cards import CardRenderer, CardTemplate, load_templates
from cds_service.config import Settings
from cds_service.errors import FhirDataUnavailable
from cds_service.facts import Terms
from cds_service.fhir.gather import gather
from cds_service.protocol import ENCOUNTER_KEYS, PREFETCH

__all__ = ["COLUMNS", "PatientAudit", "audit", "audit_patient", "hook_instance"]

HOOK_NAMESPACE = uuid.NAMESPACE_URL
SettingsLike = Settings | str | os.PathLike[str]


@dataclass(frozen=True)
class Engine:
    """What evaluating needs from configuration, built once per process and configuration."""

    settings: Settings
    terms: Terms
    renderer: CardRenderer
    groups: Mapping[str, str]  # rule id -> rule group (rules.GROUPS)


@dataclass
class PatientAudit:
    rows: list[dict[str, Any]] = field(default_factory=list)
    encounters: int = 0  # audited
    administrations: int = 0  # of the audited encounters
    flagged: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)  # (encounter, findings, rules)


def audit_patient(
    resources: Iterable[Mapping[str, Any]] | Mapping[str, Any],
    medications: Mapping[str, Mapping[str, Any]],
    settings: SettingsLike,
    *,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> list[dict[str, Any]]:
    """The findings rows of one patient's encounters (COLUMNS, plus MISSED_UNITS); pure and picklable.

    `resources` are the patient's resources (a list, or a Bundle); `medications` maps `Medication/<id>`
    to Medication JSON; `settings` is a Settings or a configuration file's path (loaded once per process).
    """
    return audit(resources, medications, engine_for(settings), since=since, until=until).rows


def audit(
    resources: Iterable[Mapping[str, Any]] | Mapping[str, Any],
    medications: Mapping[str, Mapping[str, Any]],
    engine: Engine,
    *,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> PatientAudit:
    """Audit every encounter of one patient whose local start date is within [since, until]."""
    out = PatientAudit()
    chart = chart_of(resources)
    if chart is None:
        return out
    for enc in audited_encounters(chart, since, until):
        rows = audit_encounter(engine, enc, chart, prefetch(enc, chart, medications), Export(medications))
        out.rows += rows
        out.encounters += 1
        out.administrations += sum(1 for ma in chart.administrations if given_in(ma, enc))
        if rows:
            out.flagged.append((enc["id"], len(rows), tuple(sorted({r["rule_id"] for r in rows}))))
    return out


def audit_encounter(
    engine: Engine, enc: Mapping[str, Any], chart: Chart, values: Mapping[str, Any], export: Export
) -> list[dict[str, Any]]:
    """The live service's cards for one encounter-discharge, as rows."""
    context = {"patientId": chart.patient_id, "encounterId": enc["id"]}
    resources = gather(
        templates=PREFETCH_TEMPLATES, context=context, sent=values, draft_orders=None, plain_text=False,
        fhir_server=EXPORT, token=None, allowed_servers=(EXPORT,), make_client=lambda _base, _token: export,
        max_pages=1,
    )
    outcome = service.evaluate(
        resources,
        settings=engine.settings,
        terms=engine.terms,
        renderer=engine.renderer,
        hook_kind="encounter",
        patient_id=chart.patient_id,
        encounter_id=enc["id"],
        hook_instance=hook_instance(enc["id"]),
        options={},  # no per-call options: every enabled rule, and no max-cards cut
    )
    date = local_date(enc) or ""
    return [
        row_of(card, finding, encounter_id=enc["id"], patient_id=chart.patient_id, encounter_date=date,
               drug_codes=engine.terms.formulary.drug_codes, groups=engine.groups, at_risk=at_risk)
        for card, finding, at_risk in zip(outcome.response["cards"], outcome.findings, outcome.at_risk, strict=True)
    ]


EXPORT = "https://bulk-export.invalid/fhir"  # the FHIR server an audited call asks (the export; .invalid: no host)
PREFETCH_TEMPLATES = {key: PREFETCH[key] for key in ENCOUNTER_KEYS}


class Export:
    """The export as the FHIR server of an audited encounter-discharge. Every prefetch key is sent, so gather
    asks it only for a Medication an administration references and the prefetch does not include: the export
    lacks it (chart.included_medications includes those it has), which is a 404, the drug unidentified."""

    def __init__(self, medications: Mapping[str, Mapping[str, Any]]) -> None:
        self.medications = medications
        self.deadline = time.monotonic() + 3600.0

    def read(self, relative: str) -> dict[str, Any] | None:
        found = self.medications.get(relative)
        return dict(found) if found is not None else None

    def search(self, relative: str, max_pages: int) -> dict[str, Any]:
        raise FhirDataUnavailable("An audit's prefetch is whole: the export answers no search.")


def hook_instance(encounter_id: str) -> str:
    """The same hookInstance for the same encounter on every run, so card uuids are stable."""
    return str(uuid.uuid5(HOOK_NAMESPACE, f"audit:{encounter_id}"))


# --- configuration, once per process -----------------------------------------------------------

@cache
def templates() -> dict[str, CardTemplate]:
    return load_templates()


def engine_of(settings: Settings) -> Engine:
    """Terms and card renderer as runtime.build makes them for the live service."""
    groups = {rule_id: group for group, ids in rules.GROUPS.items() for rule_id in ids}
    return Engine(settings, runtime.terms_of(settings), runtime.renderer_of(settings, templates()), groups)


_engines: dict[int, tuple[Settings, Engine]] = {}


def engine_for(settings: SettingsLike) -> Engine:
    """The engine of a Settings, or of a configuration file loaded once per process."""
    if not isinstance(settings, Settings):
        return engine_from_file(os.fspath(settings))
    if id(settings) not in _engines:
        _engines.clear()  # one Settings at a time: a caller maps one configuration over many patients
        _engines[id(settings)] = (settings, engine_of(settings))
    return _engines[id(settings)][1]


@cache
def engine_from_file(path: str) -> Engine:
    return engine_of(configuration.load(path))
