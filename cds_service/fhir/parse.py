"""Read FHIR R4 JSON, validated against the fhir.resources R4B models, tolerantly: a bad resource is set aside.

The JSON is as a JSON parser gives it: objects are dicts (checked with isinstance(x, dict), a tenth of the
time of the Mapping ABC's check, dozens of times per call).

Validation goes first through the Structs `fhir.structs` generates from fhir.resources (msgspec, which only
accepts), then, for what they refuse, through the models `fhir.fast` generates (pydantic-core, which decides
and describes the errors): the same verdicts and values as fhir.resources. An administration linked to
another encounter is history: only the elements the frequency rule reads (drug, status, date, links) are
validated and kept; see `HISTORY_ELEMENTS`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from cds_service.fhir import repair, shapes
from cds_service.fhir import structs as struct_pass
from cds_service.fhir.fast import FastModel, model_for
from cds_service.fhir.structs import PLAIN, STRICT, FhirStruct, Variant
from cds_service.rules.model import InvalidResource

READ_TYPES = frozenset(
    {"Encounter", "MedicationAdministration", "MedicationRequest", "Medication", "Condition", "ChargeItem", "Coverage"}
)
# Read only inside another resource: an Encounter's contained Locations carry its place of service.
CONTAINED_TYPES = frozenset({"Location"})
GENERATED_TYPES = READ_TYPES | CONTAINED_TYPES
MAX_PROBLEMS = 5
DRAFT_ORDERS = "context.draftOrders"  # where order-sign's draft orders are read from
# What facts.build reads of an administration that is another encounter's: the frequency rule's drug,
# status and date, the links that place it, and `contained` for a drug given as "#med".
HISTORY_ELEMENTS = (
    "resourceType", "id", "status", "_status", "medicationCodeableConcept", "medicationReference", "contained",
    "subject", "context", "effectiveDateTime", "_effectiveDateTime", "effectivePeriod",
)

# The resources are typed loosely: generated Structs or models that read like fhir.resources ones.
Resource = FhirStruct | FastModel


@dataclass
class Resources:
    """The resources of one hook call, by type, after validation (Structs or pydantic models: see fhir.shapes)."""

    encounter: shapes.Encounter | None = None
    administrations: list[shapes.MedicationAdministration] = field(default_factory=list)
    orders: list[shapes.MedicationRequest] = field(default_factory=list)
    medications: dict[str, shapes.Medication] = field(default_factory=dict)  # by "Medication/id" and fullUrl
    conditions: list[shapes.Condition] = field(default_factory=list)
    charges: list[shapes.ChargeItem] = field(default_factory=list)
    charge_json: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # by id: updates carry them whole
    coverages: list[shapes.Coverage] = field(default_factory=list)
    invalid: list[InvalidResource] = field(default_factory=list)
    repaired: list[InvalidResource] = field(default_factory=list)  # read after repairs (fhir.repair), with them
    repaired_json: dict[int, dict[str, Any]] = field(default_factory=dict)  # by id(resource): the JSON as repaired
    zone: str | None = None  # the encounter's offset: a date-time without one is read in it
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
        search = entry.get("search") if isinstance(entry, dict) else None
        if isinstance(entry, dict) and not (isinstance(search, dict) and search.get("mode") == "outcome"):
            yield entry.get("fullUrl"), entry.get("resource")


MODELS_LOCK = threading.Lock()


def models() -> dict[str, type[FastModel]]:
    """The generated model of each type read, built by the first caller (about 0.4 s); others wait for it."""
    with MODELS_LOCK:
        return _models()


@functools.cache
def _models() -> dict[str, type[FastModel]]:
    return {rtype: model_for(get_fhir_model_class(rtype)) for rtype in sorted(GENERATED_TYPES)}


def prepare() -> threading.Thread:
    """Generate the PLAIN Structs now, and the STRICT ones and the pydantic models in a background thread.

    A hook call's body is nearly always plain text and its resources nearly always valid, so a worker
    answers as soon as the PLAIN Structs are built; a call that needs the others before the thread is
    done waits for them."""
    structs(PLAIN)
    history_struct(PLAIN)
    thread = threading.Thread(target=_prepare_rest, name="fhir-models", daemon=True)
    thread.start()
    return thread


def _prepare_rest() -> None:
    structs(STRICT)
    history_struct(STRICT)
    models()


def structs(variant: Variant = STRICT) -> dict[str, type[FhirStruct]]:
    """The generated Struct of each type read (about 0.1 s per variant; apps build them at start)."""
    return struct_pass.structs(GENERATED_TYPES, variant)


def history_struct(variant: Variant = STRICT) -> type[FhirStruct]:
    """An administration read for HISTORY_ELEMENTS only: msgspec passes over the rest without a copy."""
    return _history_struct(variant)  # cached by the variant itself: history_struct() is history_struct(STRICT)


@functools.cache
def _history_struct(variant: Variant) -> type[FhirStruct]:
    return struct_pass.partial(structs(variant)["MedicationAdministration"], HISTORY_ELEMENTS)


def validate(where: str, data: Any, into: Resources, *, history: bool = False, plain: bool = False) -> Any | None:
    """Validate one resource of a type the service reads; record it as invalid when it fails.

    history=True validates only HISTORY_ELEMENTS of an administration (the rest is not read); plain=True
    says data was read from text that jsontext.loads_plain found plain, which the PLAIN Structs ask."""
    variant = PLAIN if plain else STRICT
    return _validate(where, data, into, structs(variant), history_struct(variant) if history else None, plain)


def _validate(where: str, data: Any, into: Resources, table: Mapping[str, type[FhirStruct]],
              history: type[FhirStruct] | None, plain: bool) -> Any | None:
    """validate, given the Structs of the variant by type and, for an administration read as history,
    history_struct (read looks them up once per value, not per entry)."""
    if not isinstance(data, dict):
        into.invalid.append(InvalidResource(where, "(unknown)", None, ("entry has no resource object",)))
        return None
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or rtype not in READ_TYPES:
        return None
    try:
        accepted = struct_pass.accept(table[rtype] if history is None else history, data, plain=plain)
        if accepted is not None:
            return accepted
        if history is not None:
            data = {key: data[key] for key in HISTORY_ELEMENTS if key in data}
        return validate_repairing(models()[rtype], where, rtype, resource_id(data), data, into)
    except ValidationError as exc:
        into.invalid.append(InvalidResource(where, rtype, resource_id(data), describe_errors(exc)))
    except Exception as exc:  # noqa: BLE001 - a validator of fhir_core failing otherwise on a value of the
        # wrong kind (TypeError, AttributeError, KeyError), a RecursionError in fhir.resources' own path for
        # contained resources: the resource could not be read as FHIR R4, so it is invalid, not a crash
        into.invalid.append(InvalidResource(where, rtype, resource_id(data), (type(exc).__name__,)))
    return None


def resource_id(data: dict[str, Any]) -> str | None:
    rid = data.get("id")
    return rid if isinstance(rid, str) else None


def validate_repairing(model: type[FastModel], where: str, rtype: str, rid: str | None, data: dict[str, Any],
                       into: Resources) -> Any:
    """The model of data, after repairing its near-misses of R4 when every problem is one (fhir.repair);
    the first ValidationError when one is not."""
    try:
        return model.model_validate(data)
    except ValidationError as first:
        exc, notes = first, []
        for _ in range(repair.ROUNDS):
            fixed = repair.repair(data, exc.errors(include_url=False), into.zone)
            if fixed is None:
                break
            data, more = fixed
            notes += more
            try:
                resource = model.model_validate(data)
            except ValidationError as again:
                exc = again
                continue
            into.repaired.append(InvalidResource(where, rtype, rid, tuple(notes)))
            into.repaired_json[id(resource)] = data
            return resource
        raise first from None


def read(
    values: Mapping[str, Any],
    draft_orders: Mapping[str, Any] | None = None,
    encounter_id: str | None = None,
    plain: Container[str] = (),
) -> Resources:
    """Validate every prefetched or fetched value (by key) and the draft orders of order-sign.

    Given the encounter in context, administrations linked to another encounter are read as history.
    `plain` names the keys (and DRAFT_ORDERS) read from plain text (jsontext.loads_plain)."""
    out = Resources(zone=repair.zone_of(values.get("encounter")))
    sources: list[tuple[str, Mapping[str, Any]]] = [(k, v) for k, v in values.items() if isinstance(v, dict)]
    if draft_orders:
        sources.append((DRAFT_ORDERS, draft_orders))
    for where, value in sources:
        if value.get("resourceType") == "Bundle":
            if not isinstance(value.get("entry") or [], list):
                out.invalid.append(InvalidResource(where, "Bundle", None, ("entry: Input should be a valid list",)))
                continue
            if not value.get("type"):
                out.repaired.append(InvalidResource(
                    where, "Bundle", value.get("id") if isinstance(value.get("id"), str) else None,
                    ("type: missing; read as a collection of its entries",)))
        plain_here = where in plain
        variant = PLAIN if plain_here else STRICT
        table, history = structs(variant), history_struct(variant)
        for full_url, data in entries(value):
            resource = _validate(where, data, out, table, history if is_history(data, encounter_id) else None,
                                 plain_here)
            if resource is not None:
                add(out, resource, full_url, where)
                if resource.get_resource_type() == "ChargeItem" and resource.id:
                    out.charge_json[resource.id] = out.repaired_json.get(id(resource), data)  # updates carry it
    return out


def is_history(data: Any, encounter_id: str | None) -> bool:
    """An administration that names another encounter as its context (facts.belongs says the same)."""
    if encounter_id is None or not isinstance(data, dict) or data.get("resourceType") != "MedicationAdministration":
        return False
    context = data.get("context")
    reference = context.get("reference") if isinstance(context, dict) else None
    linked = ref_key(reference) if isinstance(reference, str) else None
    return linked is not None and linked.startswith("Encounter/") and linked != f"Encounter/{encounter_id}"


def ref_key(reference: str | None) -> str | None:
    """'http://x/fhir/Encounter/1/_history/2' and 'Encounter/1' both become 'Encounter/1'."""
    if not reference:
        return None
    if reference.count("/") <= 1:
        return reference  # "Type/id", as nearly every reference is: below, one slash at most keeps it whole
    parts = [p for p in reference.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def add(out: Resources, resource: Any, full_url: str | None, where: str) -> None:
    """File a validated resource under its type, once per type and id."""
    rtype = resource.get_resource_type()
    if resource.id is not None and where != "encounter":
        key = (rtype, resource.id)
        if key in out.seen:
            return
        out.seen.add(key)
    match rtype:
        case "Encounter":
            if out.encounter is None or where == "encounter":
                out.encounter = resource
        case "MedicationAdministration":
            out.administrations.append(resource)
        case "MedicationRequest":
            if where == DRAFT_ORDERS:
                out.orders.append(resource)
        case "Medication":
            add_medication(out, resource, full_url)
        case "Condition":
            out.conditions.append(resource)
        case "ChargeItem":
            out.charges.append(resource)
        case "Coverage":
            out.coverages.append(resource)


def add_medication(out: Resources, med: Any, full_url: str | None = None) -> None:
    if med.id:
        out.medications[f"Medication/{med.id}"] = med
    if full_url:
        out.medications[full_url] = med
