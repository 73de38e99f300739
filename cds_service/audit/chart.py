"""One patient's resources, and the prefetch an EHR sends at the discharge of each of their encounters.

For an encounter E the audit builds what an EHR sends at E's discharge, under the live service's
prefetch keys (protocol.ENCOUNTER_KEYS); core.py evaluates it as a live call. What goes in:

- encounter: E itself;
- administrations: the patient's MedicationAdministrations the EHR had at E's discharge: those of E,
  and the others dated up to E's end (its start when it has no end; an undated one takes the start of
  its own encounter; one with no date at all is kept); plus each referenced `Medication/<id>` found in
  the export, as an included entry whose fullUrl is `Medication/<id>`;
- conditions: all the patient's Conditions;
- charges: the ChargeItems whose context is E;
- coverage: the patient's active Coverages whose period (when given) covers E's local date.

Each Bundle lists its resources in id order, so that the cards (whose uuids depend on their order)
are the same however the export is cut into files.

E's local date is the date part of its period.start (the encounter's own offset). Encounters that
are planned, cancelled or entered-in-error never reach discharge and are not audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cds_service.audit.export import patient_of
from cds_service.fhir.parse import ref_key

NOT_DISCHARGED = frozenset({"planned", "cancelled", "entered-in-error"})


@dataclass
class Chart:
    """One patient's resources by type, each (type, id) once."""

    patient_id: str
    encounters: list[Mapping[str, Any]] = field(default_factory=list)
    administrations: list[Mapping[str, Any]] = field(default_factory=list)
    conditions: list[Mapping[str, Any]] = field(default_factory=list)
    charges: list[Mapping[str, Any]] = field(default_factory=list)
    coverages: list[Mapping[str, Any]] = field(default_factory=list)


# --- the prefetch of one encounter-discharge -------------------------------------------------

def prefetch(
    enc: Mapping[str, Any], chart: Chart, medications: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The prefetch values an EHR sends at the discharge of `enc` (see the module docstring)."""
    starts = {e["id"]: start_of(e) for e in chart.encounters}
    admins = [ma for ma in chart.administrations if known_at_discharge(ma, enc, starts)]
    day = local_date(enc)
    return {
        "encounter": enc,
        "administrations": searchset(admins, included_medications(admins, medications)),
        "conditions": searchset(chart.conditions),
        "charges": searchset([c for c in chart.charges if linked_encounter(c) == enc["id"]]),
        "coverage": searchset([c for c in chart.coverages if is_active(c) and covers(c, day)]),
    }


def searchset(matches: Sequence[Mapping[str, Any]], included: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    def entry(resource: Mapping[str, Any], mode: str) -> dict[str, Any]:
        out: dict[str, Any] = {"resource": resource, "search": {"mode": mode}}
        if resource.get("id"):
            out = {"fullUrl": f"{resource['resourceType']}/{resource['id']}", **out}
        return out

    entries = [entry(r, "match") for r in matches] + [entry(r, "include") for r in included]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(matches), "entry": entries}


def included_medications(
    admins: Iterable[Mapping[str, Any]], medications: Mapping[str, Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The Medications the administrations reference as Medication/<id>, each once, when the export has them."""
    found: dict[str, Mapping[str, Any]] = {}
    for ma in admins:
        reference = (ma.get("medicationReference") or {}).get("reference")
        key = ref_key(reference) if isinstance(reference, str) and not reference.startswith("#") else None
        if key and key.startswith("Medication/") and key not in found:
            med = medications.get(key)
            if med is not None:
                found[key] = med
    return list(found.values())


def known_at_discharge(ma: Mapping[str, Any], enc: Mapping[str, Any], starts: Mapping[str, str | None]) -> bool:
    """E's own administrations, and the others dated up to E's end."""
    linked = linked_encounter(ma)
    if linked == enc["id"]:
        return True
    when = effective_of(ma) or (starts.get(linked) if linked else None)
    period = enc.get("period") or {}
    cutoff = period.get("end") or period.get("start")
    return when is None or not isinstance(cutoff, str) or not_after(when, cutoff)


def not_after(when: str, cutoff: str) -> bool:
    """Compare instants when both carry a time and an offset, else the dates as written."""
    try:
        a, b = dt.datetime.fromisoformat(when), dt.datetime.fromisoformat(cutoff)
        if len(when) > 10 and len(cutoff) > 10 and a.tzinfo is not None and b.tzinfo is not None:
            return a <= b
    except ValueError:
        pass
    return when[:10] <= cutoff[:10]


def given_in(ma: Mapping[str, Any], enc: Mapping[str, Any]) -> bool:
    """Counted as the encounter's: linked to it, or, linked to none, on its local date."""
    linked = linked_encounter(ma)
    if linked is not None:
        return bool(linked == enc["id"])
    when = effective_of(ma)
    return when is not None and when[:10] == local_date(enc)


def is_active(coverage: Mapping[str, Any]) -> bool:
    return coverage.get("status") in (None, "active")


def covers(coverage: Mapping[str, Any], day: str | None) -> bool:
    """The coverage's period, when it has one, includes the day (dates compared to their precision)."""
    period = coverage.get("period") or {}
    start, end = period.get("start"), period.get("end")
    if day is None:
        return True
    if isinstance(start, str) and start[:10] > day[: len(start[:10])]:
        return False
    return not isinstance(end, str) or day[: len(end[:10])] <= end[:10]


# --- reading one patient's resources ----------------------------------------------------------

def chart_of(resources: Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> Chart | None:
    """File a patient's resources by type, in id order, the first of each (type, id) winning; None without a patient."""
    if isinstance(resources, Mapping):
        resources = [e["resource"] for e in resources.get("entry") or [] if isinstance(e, Mapping) and "resource" in e]
    chart: Chart | None = None
    seen: set[tuple[str, str]] = set()
    lists = ("encounters", "administrations", "conditions", "charges", "coverages")
    types = ("Encounter", "MedicationAdministration", "Condition", "ChargeItem", "Coverage")
    by_type = dict(zip(types, lists, strict=True))
    for resource in resources:
        if not isinstance(resource, Mapping) or resource.get("resourceType") not in by_type:
            continue
        key = (str(resource["resourceType"]), str(resource.get("id")))
        if resource.get("id") is not None and key in seen:
            continue
        seen.add(key)
        chart = chart or Chart(patient_id=patient_of(resource) or "")
        getattr(chart, by_type[key[0]]).append(resource)
    if chart is None or not chart.patient_id:
        return None
    for name in lists:  # id order: the same Bundles, and so the same card uuids, however the export is cut
        getattr(chart, name).sort(key=lambda r: str(r.get("id") or ""))
    return chart


def audited_encounters(chart: Chart, since: dt.date | None, until: dt.date | None) -> list[Mapping[str, Any]]:
    """The encounters that reached discharge, with an id, starting within [since, until], by start then id."""
    out = []
    for enc in chart.encounters:
        if not isinstance(enc.get("id"), str) or enc.get("status") in NOT_DISCHARGED:
            continue
        day = local_date(enc) or ""
        if (since and not since.isoformat() <= day) or (until and not day <= until.isoformat()):
            continue  # an encounter with no start is outside any window
        out.append(enc)
    return sorted(out, key=lambda e: (start_of(e) or "", e["id"]))


def start_of(enc: Mapping[str, Any]) -> str | None:
    start = (enc.get("period") or {}).get("start")
    return start if isinstance(start, str) else None


def local_date(enc: Mapping[str, Any]) -> str | None:
    """YYYY-MM-DD of the encounter's start, in its own offset (as facts reads the date of service)."""
    start = start_of(enc)
    return start[:10] if start and len(start) >= 10 else None


def effective_of(ma: Mapping[str, Any]) -> str | None:
    when = ma.get("effectiveDateTime") or (ma.get("effectivePeriod") or {}).get("start")
    return when if isinstance(when, str) else None


def linked_encounter(resource: Mapping[str, Any]) -> str | None:
    reference = (resource.get("context") or {}).get("reference")
    key = ref_key(reference) if isinstance(reference, str) else None
    return key.split("/", 1)[1] if key and key.startswith("Encounter/") else None
