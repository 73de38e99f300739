"""Data quality: resources that could not be read."""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.rules.model import Finding, Visit


def invalid_resource(visit: Visit) -> Iterator[Finding]:
    """Name each resource that failed FHIR R4 validation; the rest of the request is still evaluated. Resources
    read only after repairing near-misses (fhir.repair) are listed in one info card, for the EHR to fix."""
    for bad in visit.invalid:
        yield Finding(
            detail={
                "where": bad.where,
                "resource_type": bad.resource_type,
                "resource_id": bad.resource_id,
                "problems": list(bad.problems),
            }
        )
    if visit.repaired:
        yield Finding(
            detail={"repairs": [{"where": fixed.where, "resource_type": fixed.resource_type,
                                 "resource_id": fixed.resource_id, "problems": list(fixed.problems)}
                                for fixed in visit.repaired]},
            indicator="info",
        )
