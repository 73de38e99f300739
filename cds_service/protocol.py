"""CDS Hooks 2.0 on the wire: the service definitions, request and feedback checks, discovery."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import fastjsonschema
import jsonschema

from cds_service.errors import InvalidHookRequest

SCHEMAS = Path(__file__).resolve().parent / "schemas"

PREFETCH = {
    "encounter": "Encounter/{{context.encounterId}}",
    "administrations": "MedicationAdministration?patient={{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "charges": "ChargeItem?context=Encounter/{{context.encounterId}}",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
}
ENCOUNTER_KEYS = ("encounter", "administrations", "conditions", "charges", "coverage")

# Per-call options in the manner of Da Vinci CRD's configuration options: advertised in discovery,
# set by a request in its own extension.
OPTIONS_EXTENSION = "injection-billing.configuration-options"
REQUEST_OPTIONS_EXTENSION = "injection-billing.configuration"
OPTION_GROUPS = {
    "billing": ("What to bill", "Administration and drug lines to create: 96372 or the right alternative, "
                "several injections, JZ/JW."),
    "documentation": ("Documentation gaps", "Drug, dose, route, time, date, performer and status gaps that "
                      "get a claim denied."),
    "coverage": ("Coverage", "Diagnoses that support medical necessity for the payer, and dosing frequency."),
    "charges": ("Captured charges", "Charges already on the encounter: E/M beside the injection, wrong codes or "
                "units, charges with nothing behind them, facility setting."),
    "data-quality": ("Data quality", "Resources that could not be read as FHIR R4."),
}
ORDER_SIGN_KEYS = ("encounter", "administrations", "conditions", "coverage")


@dataclass(frozen=True)
class ServiceDef:
    id: str
    hook: str
    kind: Literal["order-sign", "encounter"]
    title: str
    description: str
    prefetch_keys: tuple[str, ...]

    @property
    def prefetch(self) -> dict[str, str]:
        return {key: PREFETCH[key] for key in self.prefetch_keys}


def services(close_hook: str) -> dict[str, ServiceDef]:
    """The three fixed services (CONTRACT section 3); the close hook's name comes from configuration."""
    defs = [
        ServiceDef(
            "injection-billing-order-sign", "order-sign", "order-sign",
            "Injection billing at order signing",
            "When an SC/IM injection is ordered: the planned administration code (96372 or the right "
            "alternative), the drug's HCPCS code and units, and the documentation a payer will ask for.",
            ORDER_SIGN_KEYS,
        ),
        ServiceDef(
            "injection-billing-encounter-discharge", "encounter-discharge", "encounter",
            "Injection billing at encounter discharge",
            "When an encounter ends: the charges to capture for each injection given, and the gaps in "
            "the chart that would get the claim denied.",
            ENCOUNTER_KEYS,
        ),
        ServiceDef(
            "injection-billing-encounter-close", close_hook, "encounter",
            "Injection billing at encounter close",
            "The encounter-discharge checks, on the custom encounter-close hook for visits that are "
            "closed rather than discharged.",
            ENCOUNTER_KEYS,
        ),
    ]
    return {d.id: d for d in defs}


def option_definitions(max_cards: int) -> list[dict[str, Any]]:
    options: list[dict[str, Any]] = [
        {"code": code, "type": "boolean", "name": name, "description": description, "default": True}
        for code, (name, description) in OPTION_GROUPS.items()
    ]
    options.append({"code": "max-cards", "type": "integer", "name": "Maximum cards",
                    "description": "The most cards to return; the most severe are kept.", "default": max_cards})
    return options


def discovery(defs: Mapping[str, ServiceDef], max_cards: int) -> dict[str, Any]:
    extension = {OPTIONS_EXTENSION: option_definitions(max_cards)}
    return {
        "services": [
            {"hook": d.hook, "title": d.title, "description": d.description, "id": d.id, "prefetch": d.prefetch,
             "extension": extension}
            for d in defs.values()
        ]
    }


def parse_options(body: Mapping[str, Any], max_cards: int) -> dict[str, Any]:
    """The per-call options of a request, checked against what discovery advertises."""
    chosen = (body.get("extension") or {}).get(REQUEST_OPTIONS_EXTENSION) or {}
    if not isinstance(chosen, Mapping):
        raise InvalidHookRequest(f"extension/{REQUEST_OPTIONS_EXTENSION} must be an object.")
    options: dict[str, Any] = {code: True for code in OPTION_GROUPS} | {"max-cards": max_cards}
    for code, value in chosen.items():
        if code in OPTION_GROUPS and isinstance(value, bool):
            options[code] = value
        elif code == "max-cards" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            options[code] = value
        else:
            raise InvalidHookRequest(f"extension/{REQUEST_OPTIONS_EXTENSION}/{code}: unknown option or wrong type.")
    return options


@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any]
    fhir_server: str | None = None
    access_token: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackEntry:
    card: str
    outcome: str
    outcome_timestamp: dt.datetime  # in UTC
    accepted_suggestions: tuple[str, ...] = ()
    override_code: str | None = None
    override_system: str | None = None
    override_display: str | None = None
    user_comment: str | None = field(default=None, repr=False)


@cache
def schema_of(name: str) -> dict[str, Any]:
    with open(SCHEMAS / name, encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema_of(name), format_checker=jsonschema.FormatChecker())


@cache
def compiled(name: str, schema_ref: str | None = None) -> Any:
    """fastjsonschema's generated code for the same schema (or one of its $defs): a yes or no, about 50
    times faster than jsonschema. Every keyword the schemas use means the same in the draft-07 it
    generates; `format` would not, so a schema with one is checked by jsonschema alone."""
    schema = schema_of(name)
    if uses_format(schema):
        return None
    if schema_ref is not None:
        schema = {"$id": schema["$id"], "$ref": schema_ref, "$defs": schema["$defs"]}
    schema = {key: value for key, value in schema.items() if key != "$schema"}
    return fastjsonschema.compile(schema, handlers={"http": refuse_remote, "https": refuse_remote}, use_default=False)


def uses_format(node: Any) -> bool:
    """True when a schema, or any schema inside it, has a `format` keyword."""
    if isinstance(node, dict):
        return isinstance(node.get("format"), str) or any(uses_format(v) for v in node.values())
    if isinstance(node, list):
        return any(uses_format(v) for v in node)
    return False


def compile_checks() -> None:
    """Generate the compiled checks now rather than on the first call."""
    for ref in (None, "#/$defs/context-order-sign", "#/$defs/context-encounter"):
        compiled("request.schema.json", ref)
    compiled("feedback.schema.json")


def refuse_remote(uri: str) -> Any:
    raise ValueError(f"{uri}: the request schemas refer only to themselves")


def check(name: str, instance: Any, schema_ref: str | None = None, prefix: tuple[str, ...] = ()) -> None:
    """Raise InvalidHookRequest naming every violation by path (never echoing values).

    The compiled check answers for what passes; jsonschema, the authority, says what fails and why."""
    fast = compiled(name, schema_ref)
    if fast is not None:
        try:
            fast(instance)
            return
        except fastjsonschema.JsonSchemaException:
            pass
    v = validator(name)
    if schema_ref is not None:
        v = v.evolve(schema={"$ref": schema_ref, "$defs": v.schema["$defs"]})
    errors = sorted(v.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        described = "; ".join(
            f"{'/'.join(map(str, (*prefix, *e.absolute_path))) or '(body)'}: {short(e)}" for e in errors[:10]
        )
        raise InvalidHookRequest(f"The request breaks CDS Hooks 2.0: {described}")


def short(error: jsonschema.ValidationError) -> str:
    """A violation without the offending value, which may be patient data."""
    if error.validator == "required":
        return error.message.split(" is a required")[0] + " is required"
    if error.validator == "type":
        return f"must be of type {error.validator_value}"
    return f"fails '{error.validator}'"


def parse_hook_request(
    body: Any, service: ServiceDef, max_cards: int = 20
) -> HookRequest:
    """Check a service call against the spec and the service's hook."""
    check("request.schema.json", body)
    if body["hook"] != service.hook:
        raise InvalidHookRequest(f"hook '{body['hook']}' does not match service '{service.id}' ({service.hook}).")
    auth = body.get("fhirAuthorization")
    if auth is not None and not body.get("fhirServer"):
        raise InvalidHookRequest("fhirAuthorization was given without fhirServer.")
    context_def = "#/$defs/context-order-sign" if service.kind == "order-sign" else "#/$defs/context-encounter"
    check("request.schema.json", body["context"], context_def, prefix=("context",))
    return HookRequest(
        hook=body["hook"],
        hook_instance=body["hookInstance"],
        context=body["context"],
        prefetch=body.get("prefetch") or {},
        fhir_server=(body.get("fhirServer") or "").rstrip("/") or None,
        access_token=auth["access_token"] if auth else None,
        options=parse_options(body, max_cards),
    )


def timestamp(value: str) -> dt.datetime:
    """An RFC 3339 date-time, as an aware UTC datetime; 400 for one that is no real instant. A leap second
    (23:59:60) is the first instant of the next minute, as a datetime cannot hold it. The feedback schema
    already refuses what cannot be placed (outside years 1 to 9999 in UTC); this is the last guard."""
    leap = value[17:19] == "60"
    try:
        instant = dt.datetime.fromisoformat(value[:17] + "59" + value[19:] if leap else value)
        return (instant + dt.timedelta(seconds=1) if leap else instant).astimezone(dt.UTC)
    except (ValueError, OverflowError):  # 9999-12-31T23:59:59-01:00 is after year 9999 in UTC
        raise InvalidHookRequest("feedback/outcomeTimestamp is not a valid date-time that can be stored "
                                 "(its instant in UTC falls between years 1 and 9999).") from None


def text_of(value: str | None) -> str | None:
    """A free text as a database keeps it: a NUL (which PostgreSQL refuses in text) becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if value is not None else None


def parse_feedback(body: Any) -> list[FeedbackEntry]:
    check("feedback.schema.json", body)
    out = []
    for item in body["feedback"]:
        reason = item.get("overrideReason") or {}
        coding = reason.get("reason") or {}
        out.append(FeedbackEntry(
            card=item["card"],
            outcome=item["outcome"],
            outcome_timestamp=timestamp(item["outcomeTimestamp"]),
            accepted_suggestions=tuple(s["id"] for s in item.get("acceptedSuggestions") or []),
            override_code=coding.get("code"),
            override_system=coding.get("system"),
            override_display=text_of(coding.get("display")),
            user_comment=text_of(reason.get("userComment")),
        ))
    return out
