"""Findings -> CDS Hooks cards, with text from the templates in cards/."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import re
import uuid
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
from jinja2 import StrictUndefined, Template, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from cds_service.config import safe_load
from cds_service.rules.model import CPT, ChargeLine, Drug, Finding, Injection, PlannedLines, RouteClass, Visit
from cds_service.textcode import render_function

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
CARD_NAMESPACE_BYTES = CARD_NAMESPACE.bytes  # UUID.bytes converts its int on every read
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}
ROUTE_WORDS = {
    RouteClass.SC: "subcutaneous", RouteClass.IM: "intramuscular", RouteClass.IV_PUSH: "IV push",
    RouteClass.IV_INFUSION: "IV infusion", RouteClass.INTRA_ARTERIAL: "intra-arterial",
    RouteClass.ORAL: "oral", RouteClass.OTHER: "other-route",
    RouteClass.UNKNOWN: "undocumented-route",
}
CODE_MEANINGS = {
    "96372": "therapeutic, prophylactic or diagnostic injection, SC or IM (one per injection)",
    "96374": "IV push, single or initial drug",
    "96375": "IV push, each additional sequential new drug",
    "96365": "IV infusion, initial, up to 1 hour",
    "96373": "intra-arterial injection",
    "96401": "chemotherapy administration, SC or IM, non-hormonal anti-neoplastic",
    "96402": "chemotherapy administration, SC or IM, hormonal anti-neoplastic",
    "90471": "immunization administration, first vaccine",
    "90472": "immunization administration, each additional vaccine",
    "G0008": "administration of influenza virus vaccine (Medicare)",
    "G0009": "administration of pneumococcal vaccine (Medicare)",
    "G0010": "administration of hepatitis B vaccine (Medicare)",
}
UNIT_WORDS = {"ug": "mcg", "[iU]": "units", "U": "units", "each": "dose", "meq": "mEq", "cm2": "sq cm"}
MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\]<>|~]")


def escape_markdown(value: Any) -> Any:
    """Keep request data from turning into markup or links when the EHR renders detail."""
    return MARKDOWN_SPECIAL.sub(backslashed, value) if isinstance(value, str) else value


def backslashed(match: re.Match[str]) -> str:
    return "\\" + match.group()  # a function rather than a template: re parses a template on every call


def name_uuid(namespace: bytes, name: str) -> tuple[bytes, str]:
    """uuid.uuid5(UUID(bytes=namespace), name), as (bytes, text), without building UUID objects (RFC 9562 5.5):
    the first 16 bytes of SHA-1(namespace + name), with version 5 and the RFC variant set."""
    digest = bytearray(hashlib.sha1(namespace + name.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return bytes(digest), f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def card_id(hook_instance: str, finding: Finding, n: int) -> tuple[bytes, str]:
    """The uuid of the card of the n-th finding of a hook call, as (bytes, text): the same for the same call."""
    return name_uuid(CARD_NAMESPACE_BYTES, f"{hook_instance}|{finding.rule}|{finding.subject}|{n}")


def number(value: Decimal | int | float) -> int | float:
    """A JSON number: 1 rather than 1.0 or Decimal('1')."""
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


def amount(value: Decimal | int | float | None, unit: str | None) -> str | None:
    """'1,000 mcg' for humans."""
    if value is None:
        return None
    shown = number(value)
    text = f"{shown:,}" if isinstance(shown, int) else f"{shown:,.3f}".rstrip("0").rstrip(".")
    return f"{text} {UNIT_WORDS.get(unit or '', unit or '')}".strip()


def plain(value: Any) -> Any:
    """Template-friendly values: dates as ISO text, Decimals as numbers."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return number(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class PartBText:
    """The sentences about Medicare Part B payment limits and CMS quarters (cards/shared/part-b.yaml)."""

    line: str
    per_unit: str
    after_last_quarter: str
    before_first_quarter: str
    not_loaded: str


def load_part_b_text(directory: Path = CARDS_DIR) -> PartBText:
    spec = safe_load((directory / "shared" / "part-b.yaml").read_text(encoding="utf-8"))
    return PartBText(**{name: " ".join(spec[name].split()) for name in PartBText.__dataclass_fields__})


def dollars(value: Decimal, places: int = 2) -> str:
    """'$1,234.57', half a cent rounded up, as money is."""
    return f"${half_up(value, places):,.{places}f}"


def half_up(value: Decimal, places: int) -> Decimal:
    try:
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except InvalidOperation:  # more digits than a Decimal context holds: shown as formatting rounds it
        return value


def line_limit(line: ChargeLine, drug: Drug) -> Decimal | None:
    """Medicare's payment limit for a drug line: units x the limit per unit, for the drug's own code."""
    if drug.payment_limit is None or line.code != drug.hcpcs:
        return None
    return line.units * drug.payment_limit


def drug_line_of(finding: Finding, visit: Visit, inj: Injection | None) -> ChargeLine | None:
    """The drug line a card is about: one it creates or updates, else (a card with no action) the one planned."""
    if inj is None or inj.drug is None:
        return None
    lines = [*finding.creates, *finding.updates]
    if lines:
        return next((ln for ln in lines if ln.code == inj.drug.hcpcs), None)
    return visit.plan.get(inj.ref, PlannedLines()).drug


def payment_at_risk(finding: Finding, visit: Visit) -> Decimal | None:
    """Medicare Part B's payment limit for the drug line a finding is about (the audit totals it per rule)."""
    inj = next((i for i in visit.injections if i.ref == finding.subject), None)
    line = drug_line_of(finding, visit, inj)
    return line_limit(line, inj.drug) if line is not None and inj is not None and inj.drug is not None else None


class Text:
    """One text of a card (its summary, detail or suggestion's label): a Jinja template, compiled once.

    A template in the part of Jinja that cards/ uses renders as a plain Python function of its variables
    (cds_service.textcode: the same text, without Jinja's Context and generator, about 4 µs a text). Any other
    renders through Jinja, in a context made on the variables themselves, where Template.render first copies
    them with Jinja's globals into a new dict (about a third of a render's cost); a template that names a
    global of Jinja's (range, dict, namespace ...) is rendered by Template.render as usual."""

    def __init__(self, env: SandboxedEnvironment, source: str) -> None:
        tree = env.parse(source)  # read once: what it reads, then compiled from the tree (which compiling changes)
        self.names = frozenset(meta.find_undeclared_variables(tree))  # the variables it reads (Jinja's globals not)
        self.shared = not {node.name for node in tree.find_all(nodes.Name)} & set(env.globals)
        self.code = render_function(env, tree)
        # Jinja's compile of a text that has `code` is only ever asked for to compare the two: made then.
        self._template = compiled(env, tree) if self.code is None else None
        self._env, self._source = env, source
        self.concat = env.concat  # type: ignore[attr-defined]  # "".join, as Template.render joins

    @property
    def template(self) -> Template:
        """Jinja's compiled template of the text."""
        if self._template is None:
            self._template = compiled(self._env, self._source)
        return self._template

    def render(self, variables: dict[str, Any]) -> str:
        if self.code is not None:
            return self.code(variables)
        if not self.shared:
            return self.template.render(variables)
        text: str = self.concat(self.template.root_render_func(self.template.new_context(variables, shared=True)))
        return text


@dataclass(frozen=True)
class CardTemplate:
    title: str
    summary: Text
    detail: Text
    suggestion: Text | None
    override_reasons: tuple[Mapping[str, str], ...]
    links: tuple[Mapping[str, str], ...]

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The variables its texts read: CardRenderer.variables works out those only."""
        suggestion = self.suggestion.names if self.suggestion is not None else frozenset()
        return self.summary.names | self.detail.names | suggestion


def load_templates(directory: Path = CARDS_DIR) -> dict[str, CardTemplate]:
    """Compile every cards/<rule-id>.yaml once."""
    plain_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    markdown_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=escape_markdown)
    out = {}
    for path in sorted(directory.glob("*.yaml")):
        spec = safe_load(path.read_text(encoding="utf-8"))
        out[path.stem] = CardTemplate(
            title=spec["title"],
            summary=Text(plain_env, spec["summary"]),
            detail=Text(markdown_env, spec["detail"]),
            suggestion=Text(plain_env, spec["suggestion"]) if spec.get("suggestion") else None,
            override_reasons=tuple(spec.get("override_reasons", [])),
            links=tuple(spec.get("links", [])),
        )
    return out


def compiled(env: SandboxedEnvironment, source: str | nodes.Template) -> Template:
    """A template whose globals (Jinja's defaults) are one plain dict rather than a ChainMap over the
    environment's: every Template.render copies them into its context, and a dict copies at C speed."""
    template = env.from_string(source)
    template.globals = dict(template.globals)
    return template


class CardRenderer:
    """Render findings as cards for one hook call."""

    def __init__(self, templates: Mapping[str, CardTemplate], indicators: Mapping[str, str],
                 part_b: PartBText | None = None) -> None:
        self.templates = templates
        self.indicators = indicators
        self.part_b = part_b or load_part_b_text()

    def render(
        self,
        findings: Iterable[Finding],
        visit: Visit,
        hook_instance: str,
        captured: Mapping[str, Mapping[str, Any]] | None = None,
        max_cards: int | None = None,
    ) -> list[dict[str, Any]]:
        """Cards in finding order; with max_cards, the most severe are kept."""
        by_ref = {inj.ref: inj for inj in visit.injections}
        cards = []
        for n, finding in enumerate(findings):
            inj = by_ref.get(finding.subject or "")
            cards.append(self.card(finding, visit, inj, card_id(hook_instance, finding, n), captured or {}))
        if max_cards is not None and len(cards) > max_cards:
            keep = sorted(range(len(cards)), key=lambda i: (INDICATOR_ORDER[cards[i]["indicator"]], i))[:max_cards]
            cards = [cards[i] for i in sorted(keep)]
        return cards

    def card(
        self,
        finding: Finding,
        visit: Visit,
        inj: Injection | None,
        uuid_of: tuple[bytes, str],
        captured: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Any]:
        """One card; uuid_of is the (bytes, text) of its uuid, the namespace of its suggestion's."""
        template = self.templates[finding.rule]
        variables = self.variables(finding, visit, inj, template.names)
        summary = " ".join(template.summary.render(variables).split())
        card: dict[str, Any] = {
            "uuid": uuid_of[1],
            "summary": summary if len(summary) < 140 else summary[:136] + "...",
            "detail": template.detail.render(variables).strip(),
            "indicator": finding.indicator or self.indicators.get(finding.rule, "info"),
            "source": {
                "label": SOURCE_LABEL,
                "topic": {"system": RULE_SYSTEM, "code": finding.rule, "display": template.title},
            },
        }
        more = self.part_b_sentences(finding, visit, inj)
        if more:
            card["detail"] = "\n\n".join([card["detail"], *more]) if card["detail"] else "\n\n".join(more)
        if not card["detail"]:
            del card["detail"]
        actions = [self.create(line, visit) for line in finding.creates]
        actions += [self.update(line, visit, captured) for line in finding.updates]
        actions += [
            {"type": "delete", "description": f"Remove charge {self.code_of(captured, cid)}",
             "resourceId": f"ChargeItem/{cid}"}
            for cid in finding.deletes
        ]
        if actions and template.suggestion is not None:
            card["suggestions"] = [{
                "label": " ".join(template.suggestion.render(variables).split()),
                "uuid": name_uuid(uuid_of[0], "suggestion-0")[1],
                "isRecommended": True,
                "actions": actions,
            }]
            card["selectionBehavior"] = "any"
        if template.override_reasons:
            card["overrideReasons"] = [
                {"system": OVERRIDE_SYSTEM, "code": r["code"], "display": r["display"]}
                for r in template.override_reasons
            ]
        if template.links:
            card["links"] = [{"label": link["label"], "url": link["url"], "type": "absolute"}
                             for link in template.links]
        return card

    def part_b_sentences(self, finding: Finding, visit: Visit, inj: Injection | None) -> list[str]:
        """Medicare's payment limit for the drug line the card is about, and a note when the date of service
        is outside the CMS quarters loaded. Text only: the suggestion is the same with or without them."""
        drug = inj.drug if inj is not None else None
        if drug is None or drug.quarter is None:
            return []
        out = []
        line = drug_line_of(finding, visit, inj)
        total = line_limit(line, drug) if line is not None else None
        quarter = drug.quarter.replace("q", " Q")
        if line is not None and total is not None and drug.payment_limit is not None:
            out.append(self.part_b.line.format(code=line.code, units=number(line.units), total=dollars(total),
                                               per_unit=dollars(drug.payment_limit, 3),
                                               quarter=quarter))
        elif finding.rule == "dose-missing" and drug.payment_limit is not None:
            out.append(self.part_b.per_unit.format(code=drug.hcpcs, quarter=quarter,
                                                   per_unit=dollars(drug.payment_limit, 3)))
        if drug.quarter_fit != "in" and (out or finding.creates or finding.updates):
            day = inj.date_of_service.isoformat() if inj is not None and inj.date_of_service else "(unknown)"
            text = {"after": self.part_b.after_last_quarter, "before": self.part_b.before_first_quarter,
                    "gap": self.part_b.not_loaded}[drug.quarter_fit]
            out.append(text.format(date=day, quarter=quarter))
        return out

    def variables(self, finding: Finding, visit: Visit, inj: Injection | None,
                  names: Container[str]) -> dict[str, Any]:
        """The variables a card's texts read: the finding's detail (as plain values) and those below, each
        worked out only when one of `names` (the variables the texts read) asks for it."""
        lines = [*finding.creates, *finding.updates]
        drug = inj.drug if inj else None
        unit = drug.billing_unit.unit if drug else None
        out = {key: plain(value) for key, value in finding.detail.items() if key in names}
        if "lines" in names:
            out["lines"] = " and ".join(self.line_text(ln) for ln in lines)
        if "charges" in names:
            out["charges"] = [{"code": ln.code, "units": number(ln.units), "modifiers": list(ln.modifiers),
                               "meaning": self.meaning(ln.code, inj)} for ln in lines]
        if "drug_line" in names:
            planned = visit.plan.get(inj.ref, PlannedLines()) if inj else PlannedLines()
            out["drug_line"] = planned.drug is not None and any(ln.code == planned.drug.code for ln in lines)
        if "route" in names:
            out["route"] = ROUTE_WORDS[inj.route] if inj else None
        if "drug" in names:
            out["drug"] = drug.display if drug else inj.drug_text if inj else None
        if "identified" in names:
            out["identified"] = drug is not None
        if "drug_code" in names:
            out["drug_code"] = drug.hcpcs if drug else None
        if "unit_size" in names:
            out["unit_size"] = amount(drug.billing_unit.value, unit) if drug else None
        if "quarter_label" in names:
            out["quarter_label"] = drug.quarter.replace("q", " Q") if drug and drug.quarter else None
        if "dose" in names:
            out["dose"] = amount(inj.dose, unit) if inj and inj.dose is not None else None
        if "max_dose" in names:
            out["max_dose"] = amount(drug.max_dose, unit) if drug and drug.max_dose is not None else None
        if "date" in names:
            out["date"] = ((inj.date_of_service.isoformat() if inj.date_of_service else None) if inj
                           else plain(finding.detail.get("date")))
        if "ref" in names:
            out["ref"] = finding.subject
        if "what" in names:
            out["what"] = "order" if inj and inj.kind == "order" else "administration"
        if "planned" in names:
            out["planned"] = visit.hook_kind == "order-sign"
        if "payer_name" in names:
            out["payer_name"] = visit.payer.display if visit.payer else None
        if "unit_words" in names:
            out["unit_words"] = UNIT_WORDS.get(unit or "", unit)
        if "resource" in names:
            out["resource"] = (f"{finding.detail.get('resource_type')}/"
                               f"{finding.detail.get('resource_id') or '(no id)'}")
        return out

    @staticmethod
    def line_text(line: ChargeLine) -> str:
        mods = "-" + "-".join(line.modifiers) if line.modifiers else ""
        return f"{line.code}{mods} x{number(line.units)}"

    @staticmethod
    def meaning(code: str, inj: Injection | None) -> str:
        if code in CODE_MEANINGS:
            return CODE_MEANINGS[code]
        if inj is not None and inj.drug is not None and code == inj.drug.hcpcs:
            size, unit = inj.drug.billing_unit.value, inj.drug.billing_unit.unit
            return f"{inj.drug.display}, one unit per {amount(size, unit)} (rounded up)"
        return "charge"

    @staticmethod
    def code_of(captured: Mapping[str, Mapping[str, Any]], charge_id: str) -> str:
        codings = (captured.get(charge_id, {}).get("code") or {}).get("coding") or [{}]
        return str(codings[0].get("code") or f"ChargeItem/{charge_id}")

    @staticmethod
    def status(visit: Visit) -> str:
        return "planned" if visit.hook_kind == "order-sign" else "billable"

    def create(self, line: ChargeLine, visit: Visit) -> dict[str, Any]:
        resource: dict[str, Any] = {"resourceType": "ChargeItem"}
        if line.modifiers:
            resource["extension"] = [modifier_extension(m) for m in line.modifiers]
        resource["status"] = self.status(visit)
        resource["code"] = {"coding": [{"system": CODE_SYSTEMS[line.system], "code": line.code}]}
        resource["subject"] = {"reference": visit.patient_ref}
        if visit.encounter_ref:
            resource["context"] = {"reference": visit.encounter_ref}
        if line.date_of_service:
            resource["occurrenceDateTime"] = line.date_of_service.isoformat()
        resource["quantity"] = {"value": number(line.units)}
        if line.service:
            resource["service"] = [{"reference": ref} for ref in line.service]
        system_name = "CPT" if line.system == CPT else "HCPCS"
        return {"type": "create", "description": f"Add charge {system_name} {self.line_text(line)}",
                "resource": resource}

    def update(self, line: ChargeLine, visit: Visit, captured: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The whole captured ChargeItem, with its id, carrying the corrected code, units and modifiers."""
        resource = json_copy(captured.get(line.id or "", {})) or {"resourceType": "ChargeItem"}
        resource["id"] = line.id
        others = [e for e in resource.get("extension", []) if not str(e.get("url", "")).endswith("/procedure-modifier")]
        kept = {(e.get("valueCoding") or {}).get("code"): e for e in resource.get("extension", [])
                if str(e.get("url", "")).endswith("/procedure-modifier")}
        modifiers = [kept.get(m) or modifier_extension(m) for m in line.modifiers]
        if others or modifiers:
            resource["extension"] = others + modifiers
        else:
            resource.pop("extension", None)
        resource["status"] = self.status(visit)
        billing = {"system": CODE_SYSTEMS[line.system], "code": line.code}
        rest = [c for c in (resource.get("code") or {}).get("coding", [])
                if c.get("system") not in CODE_SYSTEMS.values() and c.get("code") != line.code]
        resource["code"] = {**(resource.get("code") or {}), "coding": [billing, *rest]}
        resource.setdefault("subject", {"reference": visit.patient_ref})
        if visit.encounter_ref:
            resource.setdefault("context", {"reference": visit.encounter_ref})
        if line.date_of_service and not any(k.startswith("occurrence") for k in resource):
            resource["occurrenceDateTime"] = line.date_of_service.isoformat()
        resource["quantity"] = {**(resource.get("quantity") or {}), "value": number(line.units)}
        if not resource.get("service") and line.service:
            resource["service"] = [{"reference": ref} for ref in line.service]
        system_name = "CPT" if line.system == CPT else "HCPCS"
        return {"type": "update", "description": f"Change charge to {system_name} {self.line_text(line)}",
                "resource": resource}


def json_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON object as a JSON parser gives it (dicts, lists, str, int, float, bool, None):
    written and read back by orjson (a seventh of copy.deepcopy's time); copy.deepcopy for what orjson
    cannot write (an integer past 64 bits, nesting past 255 levels). Not for other Python values, which
    orjson would turn into JSON ones."""
    try:
        copied: dict[str, Any] = orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return copy.deepcopy(dict(value))
    return copied


def modifier_extension(code: str) -> dict[str, Any]:
    return {"url": MODIFIER_URL, "valueCoding": {"system": MODIFIER_SYSTEM, "code": code}}
