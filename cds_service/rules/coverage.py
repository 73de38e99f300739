"""Medical necessity and frequency: what the payer profile covers, and how often."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from cds_service.rules.model import Finding, Frequency, Injection, Visit


def icd10_key(code: str) -> str:
    """ICD-10-CM codes compare without their dot: 'D51.0' -> 'D510'."""
    return code.replace(".", "").strip().upper()


def diagnosis_missing(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """No diagnosis on the admin or the encounter: nothing supports medical necessity (LCD L33967)."""
    if inj.completed and not inj.diagnoses:
        yield Finding()


def diagnosis_not_covered(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """Diagnoses exist, but none is on the payer profile's covered list for this drug."""
    if not inj.completed or not inj.diagnoses or inj.drug is None or visit.payer is None:
        return
    covered = visit.payer.covered(inj.drug)
    if covered is None:
        return
    if not any(icd10_key(dx).startswith(prefix) for dx in inj.diagnoses for prefix in covered):
        yield Finding(detail={"diagnoses": list(inj.diagnoses), "payer": visit.payer.display})


def frequency_exceeded(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """An earlier dose inside the minimum interval, outside a loading phase (BPM ch. 7 s40.1.2.4A)."""
    if not inj.completed or inj.drug is None or inj.date_of_service is None or visit.payer is None:
        return
    limit = visit.payer.frequency_of(inj.drug)
    if limit is None:
        return
    earlier = sorted([
        other.date_of_service
        for other in (*visit.history, *visit.injections)
        if other.ref != inj.ref and other.completed and other.drug is not None and other.drug.key == inj.drug.key
        and other.date_of_service is not None and other.date_of_service <= inj.date_of_service
        and (other.date_of_service < inj.date_of_service or earlier_same_day(other, inj))
    ])
    if not earlier:
        return
    gap = (inj.date_of_service - earlier[-1]).days
    if gap >= limit.min_interval_days or in_loading_phase(inj.date_of_service, earlier, limit):
        return
    yield Finding(detail={"previous": earlier[-1], "days": gap, "min_days": limit.min_interval_days})


def earlier_same_day(other: Injection, inj: Injection) -> bool:
    """Two doses on one day: the later one is the extra dose (by time, else by id)."""
    if other.at is not None and inj.at is not None and other.at != inj.at:
        return other.at < inj.at
    return other.ref < inj.ref


def in_loading_phase(day: dt.date, earlier: list[dt.date], limit: Frequency) -> bool:
    """A new series starts after a gap longer than twice the interval; it may load for a while."""
    if not limit.loading_max_doses:
        return False
    series = [day]
    for previous in reversed(earlier):
        if (series[-1] - previous).days > 2 * limit.min_interval_days:
            break
        series.append(previous)
    start = series[-1]
    return len(series) <= limit.loading_max_doses and (day - start).days <= limit.loading_window_days
