"""Findings -> CDS Hooks cards, with text from the templates in cards/."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from cds_service.rules.model import CPT, Finding, Injection, RouteClass, Visit

CARDS_DIR = Path(__file__).resolve().parent.parent / "cards"
RULE_SYSTEM = "https://injection-billing.org/fhir/CodeSystem/billing-rule"
OVERRIDE_SYSTEM = "https://injection-billing.org/fhir/CodeSystem/override-reason"
MODIFIER_URL = "https://injection-billing.org/fhir/StructureDefinition/procedure-modifier"
CODE_SYSTEMS = {
    "cpt": "http://www.ama-assn.org/go/cpt",
    "hcpcs": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
}
MODIFIER_SYSTEM = "http://www.ama-assn.org/go/cpt"
SOURCE_LABEL = "Injection Billing CDS"
CARD_NAMESPACE = uuid.UUID("9d7f0f7e-0e4c-4b5e-9a53-3c1f3b1d2a61")
ROUTE_WORDS = {
    RouteClass.SC: "subcutaneous", RouteClass.IM: "intramuscular", RouteClass.IV_PUSH: "IV push",
    RouteClass.IV_INFUSION: "IV infusion", RouteClass.INTRA_ARTERIAL: "intra-arterial",
    RouteClass.ORAL: "oral", RouteClass.OTHER: "other-route", RouteClass.UNKNOWN: "undocumented-route",
}
CODE_MEANINGS = {
    "96372": "therapeutic, prophylactic or diagnostic injection, SC or IM (one per injection)",
}
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
UNIT_WORDS = {"ug": "mcg", "[iU]": "units", "U": "units"}


def escape_markdown(value: Any) -> Any:
    """Keep request data from turning into markup or links when the EHR renders detail."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", value) if isinstance(value, str) else value


@dataclass(frozen=True)
class CardTemplate:
    title: str
    summary: Any
    detail: Any
    suggestion: Any | None
    override_reasons: tuple[Mapping[str, str], ...]


def load_templates(directory: Path = CARDS_DIR) -> dict[str, CardTemplate]:
    """Compile every cards/<rule-id>.yaml once."""
    plain = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    markdown = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=escape_markdown)
    out = {}
    for path in sorted(directory.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        out[path.stem] = CardTemplate(
            title=spec["title"],
            summary=plain.from_string(spec["summary"]),
            detail=markdown.from_string(spec["detail"]),
            suggestion=plain.from_string(spec["suggestion"]) if spec.get("suggestion") else None,
            override_reasons=tuple(spec.get("override_reasons", [])),
        )
    return out


def number(value: Decimal | int) -> int | float:
    """A JSON number: 1 rather than 1.0 or Decimal('1')."""
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


class CardRenderer:
    """Render findings as cards for one hook call."""

    def __init__(self, templates: Mapping[str, CardTemplate], indicators: Mapping[str, str]) -> None:
        self.templates = templates
        self.indicators = indicators

    def render(self, findings: Iterable[Finding], visit: Visit, hook_instance: str) -> list[dict[str, Any]]:
        by_ref = {inj.ref: inj for inj in visit.injections}
        cards = []
        for n, finding in enumerate(findings):
            inj = by_ref.get(finding.subject or "")
            card_id = uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}|{finding.rule}|{finding.subject}|{n}")
            cards.append(self.card(finding, visit, inj, card_id))
        return cards

    def card(self, finding: Finding, visit: Visit, inj: Injection | None, card_id: uuid.UUID) -> dict[str, Any]:
        template = self.templates[finding.rule]
        variables = self.variables(finding, visit, inj)
        summary = " ".join(template.summary.render(variables).split())
        card: dict[str, Any] = {
            "uuid": str(card_id),
            "summary": summary if len(summary) < 140 else summary[:136] + "...",
            "detail": template.detail.render(variables).strip(),
            "indicator": self.indicators.get(finding.rule, "info"),
            "source": {
                "label": SOURCE_LABEL,
                "topic": {"system": RULE_SYSTEM, "code": finding.rule, "display": template.title},
            },
        }
        actions = [self.action("create", line, visit, inj) for line in finding.creates]
        actions += [self.action("update", line, visit, inj) for line in finding.updates]
        if actions and template.suggestion is not None:
            card["suggestions"] = [{
                "label": " ".join(template.suggestion.render(variables).split()),
                "uuid": str(uuid.uuid5(card_id, "suggestion-0")),
                "isRecommended": True,
                "actions": actions,
            }]
            card["selectionBehavior"] = "any"
        if template.override_reasons:
            card["overrideReasons"] = [
                {"system": OVERRIDE_SYSTEM, "code": r["code"], "display": r["display"]}
                for r in template.override_reasons
            ]
        return card

    def variables(self, finding: Finding, visit: Visit, inj: Injection | None) -> dict[str, Any]:
        lines = [*finding.creates, *finding.updates]
        drug_line = inj is not None and inj.drug is not None and any(ln.code == inj.drug.hcpcs for ln in lines)
        return {
            **finding.detail,
            "lines": " and ".join(f"{ln.code} x{number(ln.units)}" for ln in lines),
            "charges": [
                {"code": ln.code, "units": number(ln.units), "meaning": self.meaning(ln.code, inj)} for ln in lines
            ],
            "drug_line": drug_line,
            "route": ROUTE_WORDS[inj.route] if inj else None,
            "drug": (inj.drug.display if inj and inj.drug else inj.drug_text if inj else None),
            "date": inj.date_of_service.isoformat() if inj and inj.date_of_service else None,
            "planned": visit.hook_kind == "order-sign",
            "resource": f"{finding.detail.get('resource_type')}/{finding.detail.get('resource_id') or '(no id)'}",
        }

    @staticmethod
    def meaning(code: str, inj: Injection | None) -> str:
        if code in CODE_MEANINGS:
            return CODE_MEANINGS[code]
        if inj is not None and inj.drug is not None and code == inj.drug.hcpcs:
            size, unit = inj.drug.billing_unit.value, inj.drug.billing_unit.unit
            return f"{inj.drug.display}, one unit per {number(size):,} {UNIT_WORDS.get(unit, unit)} (rounded up)"
        return "charge"

    def action(self, kind: str, line: Any, visit: Visit, inj: Injection | None) -> dict[str, Any]:
        resource: dict[str, Any] = {"resourceType": "ChargeItem"}
        if line.id:
            resource["id"] = line.id
        if line.modifiers:
            resource["extension"] = [
                {"url": MODIFIER_URL, "valueCoding": {"system": MODIFIER_SYSTEM, "code": m}} for m in line.modifiers
            ]
        resource["status"] = "planned" if visit.hook_kind == "order-sign" else "billable"
        resource["code"] = {"coding": [{"system": CODE_SYSTEMS[line.system], "code": line.code}]}
        resource["subject"] = {"reference": visit.patient_ref}
        if visit.encounter_ref:
            resource["context"] = {"reference": visit.encounter_ref}
        if line.date_of_service:
            resource["occurrenceDateTime"] = line.date_of_service.isoformat()
        resource["quantity"] = {"value": number(line.units)}
        if line.service:
            resource["service"] = [{"reference": ref} for ref in line.service]
        verb = "Add" if kind == "create" else "Update"
        system_name = "CPT" if line.system == CPT else "HCPCS"
        return {
            "type": kind,
            "description": f"{verb} charge {system_name} {line.code} x{number(line.units)}",
            "resource": resource,
        }
