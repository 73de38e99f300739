"""Read FHIR R4 JSON with fhir.resources.R4B, tolerantly: a bad resource is set aside, not fatal."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from pydantic import ValidationError

from cds_service.rules.model import InvalidResource

READ_TYPES = frozenset(
    {"Encounter", "MedicationAdministration", "MedicationRequest", "Medication", "Condition", "ChargeItem", "Coverage"}
)
MAX_PROBLEMS = 5


@dataclass
class Resources:
    """The resources of one hook call, by type, after validation."""

    encounter: Encounter | None = None
    administrations: list[MedicationAdministration] = field(default_factory=list)
    orders: list[MedicationRequest] = field(default_factory=list)
    medications: dict[str, Medication] = field(default_factory=dict)  # by "Medication/id" and fullUrl
    conditions: list[Condition] = field(default_factory=list)
    charges: list[ChargeItem] = field(default_factory=list)
    charge_json: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # by id: updates carry them whole
    coverages: list[Coverage] = field(default_factory=list)
    invalid: list[InvalidResource] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)  # (type, id): a paged search may repeat an entry


def describe_errors(exc: ValidationError) -> tuple[str, ...]:
    """Say where and why validation failed, without echoing the offending values."""
    out = []
    for err in exc.errors(include_input=False, include_url=False)[:MAX_PROBLEMS]:
        where = ".".join(str(p) for p in err["loc"]) or "(resource)"
        out.append(f"{where}: {err['msg']}")
    return tuple(out)


def entries(value: Mapping[str, Any]) -> Iterator[tuple[str | None, Any]]:
    """Yield (fullUrl, resource) for a Bundle, or (None, resource) for a single resource."""
    if value.get("resourceType") != "Bundle":
        yield None, value
        return
    for entry in value.get("entry") or []:
        if isinstance(entry, Mapping) and (entry.get("search") or {}).get("mode") != "outcome":
            yield entry.get("fullUrl"), entry.get("resource")


def validate(where: str, data: Any, into: Resources) -> Any | None:
    """Validate one resource of a type the service reads; record it as invalid when it fails."""
    if not isinstance(data, Mapping):
        into.invalid.append(InvalidResource(where, "(unknown)", None, ("entry has no resource object",)))
        return None
    rtype = data.get("resourceType")
    if rtype not in READ_TYPES:
        return None
    rid = data.get("id") if isinstance(data.get("id"), str) else None
    try:
        return get_fhir_model_class(rtype).model_validate(data)
    except ValidationError as exc:
        into.invalid.append(InvalidResource(where, rtype, rid, describe_errors(exc)))
    except (TypeError, ValueError) as exc:  # pragma: no cover - pydantic wraps nearly all of these
        into.invalid.append(InvalidResource(where, rtype, rid, (type(exc).__name__,)))
    return None


def read(values: Mapping[str, Any], draft_orders: Mapping[str, Any] | None = None) -> Resources:
    """Validate every prefetched or fetched value (by key) and the draft orders of order-sign."""
    out = Resources()
    sources: list[tuple[str, Mapping[str, Any]]] = [(k, v) for k, v in values.items() if isinstance(v, Mapping)]
    if draft_orders:
        sources.append(("context.draftOrders", draft_orders))
    for where, value in sources:
        for full_url, data in entries(value):
            resource = validate(where, data, out)
            if resource is not None:
                add(out, resource, full_url, where)
                if isinstance(resource, ChargeItem) and resource.id:
                    out.charge_json[resource.id] = data
    return out


def add(out: Resources, resource: Any, full_url: str | None, where: str) -> None:
    """File a validated resource under its type, once per type and id."""
    if resource.id is not None and where != "encounter":
        key = (resource.get_resource_type(), resource.id)
        if key in out.seen:
            return
        out.seen.add(key)
    match resource:
        case Encounter():
            if out.encounter is None or where == "encounter":
                out.encounter = resource
        case MedicationAdministration():
            out.administrations.append(resource)
        case MedicationRequest():
            if where == "context.draftOrders":
                out.orders.append(resource)
        case Medication():
            add_medication(out, resource, full_url)
        case Condition():
            out.conditions.append(resource)
        case ChargeItem():
            out.charges.append(resource)
        case Coverage():
            out.coverages.append(resource)


def add_medication(out: Resources, med: Medication, full_url: str | None = None) -> None:
    if med.id:
        out.medications[f"Medication/{med.id}"] = med
    if full_url:
        out.medications[full_url] = med
