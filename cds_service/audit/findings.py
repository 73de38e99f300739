"""One findings.csv row per card: what the card is about, what it would do, and to which charge codes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any

from cds_service.cards import half_up
from cds_service.rules.model import Finding

COLUMNS = (
    "encounter_id", "patient_id", "admin_id", "date", "month", "rule_id", "group", "indicator", "action",
    "codes", "drug_code", "units", "card_uuid", "summary", "part_b_limit",
)
ACTION_ORDER = ("create", "update", "delete")
ADMIN_PREFIX = "MedicationAdministration/"
# A row also carries, outside COLUMNS, the drug units its create actions would add: {code: units}.
MISSED_UNITS = "missed_units"


def row_of(
    card: Mapping[str, Any],
    finding: Finding,
    *,
    encounter_id: str,
    patient_id: str,
    encounter_date: str,
    drug_codes: Collection[str],
    groups: Mapping[str, str],
    at_risk: Decimal | None = None,
) -> dict[str, Any]:
    """The row of one card; `finding` is the one the card was rendered from, `at_risk` Medicare Part B's
    payment limit for the drug line it is about (part_b_limit: dollars and cents, empty for none)."""
    actions = first_actions(card)
    charges = [a for a in actions if a.get("type") in ("create", "update") and is_charge(a.get("resource"))]
    codes = [code_of(a["resource"]) for a in charges]
    drug = next((a["resource"] for a, code in zip(charges, codes, strict=True) if code in drug_codes), None)
    date = next(filter(None, (occurrence_of(a["resource"]) for a in charges)), None) or encounter_date
    rule_id = str(card["source"]["topic"]["code"])
    return {
        "encounter_id": encounter_id,
        "patient_id": patient_id,
        "admin_id": admin_of(finding, charges),
        "date": date,
        "month": date[:7],
        "rule_id": rule_id,
        "group": groups.get(rule_id, ""),
        "indicator": card.get("indicator", ""),
        "action": "+".join(t for t in ACTION_ORDER if any(a.get("type") == t for a in actions)) or "none",
        "codes": " ".join(code for code in codes if code),
        "drug_code": code_of(drug) if drug is not None else "",
        "units": units_of(drug) if drug is not None else "",
        "card_uuid": card.get("uuid", ""),
        "summary": card.get("summary", ""),
        "part_b_limit": f"{half_up(at_risk, 2):.2f}" if at_risk is not None else "",
        MISSED_UNITS: missed_units(charges, drug_codes),
    }


def first_actions(card: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    suggestions = card.get("suggestions") or []
    actions = suggestions[0].get("actions") if suggestions else None
    return [a for a in actions or [] if isinstance(a, Mapping)]


def is_charge(resource: Any) -> bool:
    return isinstance(resource, Mapping) and resource.get("resourceType") == "ChargeItem"


def code_of(charge: Mapping[str, Any]) -> str:
    codings = (charge.get("code") or {}).get("coding") or [{}]
    return str(codings[0].get("code") or "")


def units_of(charge: Mapping[str, Any]) -> int | str:
    """quantity.value as an integer (units of service are whole); 1 when absent, as FHIR means it."""
    value = (charge.get("quantity") or {}).get("value", 1)
    if isinstance(value, int | float) and float(value).is_integer():
        return int(value)
    return str(value)


def occurrence_of(charge: Mapping[str, Any]) -> str | None:
    when = charge.get("occurrenceDateTime") or (charge.get("occurrencePeriod") or {}).get("start")
    return when[:10] if isinstance(when, str) and len(when) >= 10 else None


def admin_of(finding: Finding, charges: Sequence[Mapping[str, Any]]) -> str:
    """The administration a finding is about: its subject, else the service its charges rest on."""
    refs = [finding.subject or ""]
    refs += [s.get("reference") or "" for a in charges for s in a["resource"].get("service") or []]
    return next((ref[len(ADMIN_PREFIX):] for ref in refs if ref.startswith(ADMIN_PREFIX)), "")


def missed_units(charges: Sequence[Mapping[str, Any]], drug_codes: Collection[str]) -> dict[str, int]:
    """Units of the drug lines the card would create (charges never captured)."""
    out: dict[str, int] = {}
    for action in charges:
        code = code_of(action["resource"])
        units = units_of(action["resource"])
        if action.get("type") == "create" and code in drug_codes and isinstance(units, int):
            out[code] = out.get(code, 0) + units
    return out
