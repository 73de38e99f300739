"""What the console's templates show: cards as an EHR shows them, the configuration, the override-rate chart."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import yaml
from markupsafe import Markup
from sqlalchemy.engine import make_url

from cds_service.analytics import RuleStats
from cds_service.cards import CODE_SYSTEMS, amount
from cds_service.partb import PartB, quarter_label, report
from cds_service.runtime import Runtime

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

SYSTEM_NAMES = {url: name.upper() for name, url in CODE_SYSTEMS.items()}
REDACTED = "(redacted)"


@cache
def markdown_parser() -> MarkdownIt:
    """CommonMark with raw HTML off: any tag in a card's detail is shown as text; markdown-it also refuses
    javascript:, vbscript:, file: and data: link targets. Imported and built on the console's first page
    (about 75 ms), not while every worker starts."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def markdown(text: str) -> Markup:
    return Markup(markdown_parser().render(text))  # markdown-it escapes all HTML: html is disabled


@dataclass
class Charge:
    action: str  # create | update
    description: str
    code: str
    system: str
    units: Any
    modifiers: list[str]
    status: str | None
    resource_id: str | None
    services: list[str]


@dataclass
class Action:
    type: str
    description: str
    resource_type: str | None
    resource_id: str | None
    charge: Charge | None = None


@dataclass
class Suggestion:
    label: str
    recommended: bool
    actions: list[Action]


@dataclass
class CardView:
    uuid: str
    indicator: str
    summary: str
    detail: Markup | None
    source_label: str
    rule: str
    rule_title: str
    suggestions: list[Suggestion] = field(default_factory=list)
    override_reasons: list[str] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)


def charge_of(action: Mapping[str, Any]) -> Charge | None:
    resource = action.get("resource") or {}
    if resource.get("resourceType") != "ChargeItem":
        return None
    coding = ((resource.get("code") or {}).get("coding") or [{}])[0]
    modifiers = [str((e.get("valueCoding") or {}).get("code", "")) for e in resource.get("extension", [])
                 if str(e.get("url", "")).endswith("/procedure-modifier")]
    return Charge(
        action=str(action.get("type")),
        description=str(action.get("description", "")),
        code=str(coding.get("code", "")),
        system=SYSTEM_NAMES.get(coding.get("system", ""), str(coding.get("system", ""))),
        units=(resource.get("quantity") or {}).get("value", 1),
        modifiers=modifiers,
        status=resource.get("status"),
        resource_id=resource.get("id"),
        services=[str(s.get("reference", "")) for s in resource.get("service", []) if isinstance(s, Mapping)],
    )


def card_view(card: Mapping[str, Any]) -> CardView:
    source = card.get("source") or {}
    topic = source.get("topic") or {}
    suggestions = []
    for s in card.get("suggestions", []):
        actions = []
        for a in s.get("actions", []):
            resource = a.get("resource") or {}
            actions.append(Action(
                type=str(a.get("type")),
                description=str(a.get("description", "")),
                resource_type=resource.get("resourceType"),
                resource_id=resource.get("id") or a.get("resourceId"),
                charge=charge_of(a),
            ))
        suggestions.append(Suggestion(str(s.get("label", "")), bool(s.get("isRecommended")), actions))
    links = [
        {"label": link.get("label", ""), "url": link.get("url", ""),
         "safe": str(link.get("url", "")).startswith(("https://", "http://"))}
        for link in card.get("links", [])
    ]
    return CardView(
        uuid=str(card.get("uuid", "")),
        indicator=str(card.get("indicator", "info")),
        summary=str(card.get("summary", "")),
        detail=markdown(card["detail"]) if card.get("detail") else None,
        source_label=str(source.get("label", "")),
        rule=str(topic.get("code", "")),
        rule_title=str(topic.get("display", "")),
        suggestions=suggestions,
        override_reasons=[str(r.get("display", r.get("code", ""))) for r in card.get("overrideReasons", [])],
        links=links,
    )


# ---------------------------------------------------------------- configuration


def redacted(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration without its secrets: tokens, and the password of the store URL."""
    data: dict[str, Any] = copy.deepcopy(dict(raw))
    for section in ("console", "reports"):
        if isinstance(data.get(section), dict) and data[section].get("token"):
            data[section]["token"] = REDACTED
    store = data.get("store")
    if isinstance(store, dict) and isinstance(store.get("url"), str):
        try:
            store["url"] = make_url(store["url"]).render_as_string(hide_password=True)
        except Exception:  # not a URL SQLAlchemy reads: show nothing of it
            store["url"] = REDACTED
    return data


def as_yaml(raw: Mapping[str, Any]) -> str:
    return yaml.safe_dump(redacted(raw), sort_keys=False, allow_unicode=True, width=110)


def text(value: Any) -> str:
    """A configuration value in one line."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        if set(value) == {"value", "unit"}:  # a dose as a coder writes it: "1,000 mcg", not "1000 ug"
            return amount(value["value"], value["unit"]) or "\u2014"
        return "; ".join(f"{k}: {text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value) if value else "\u2014"
    return str(value)


@dataclass
class ConfigView:
    source: str
    rules: list[dict[str, Any]]
    payers_default: str
    payers: list[dict[str, Any]]
    drugs: list[dict[str, Any]]
    thresholds: list[tuple[str, str]]


def config_view(rt: Runtime) -> ConfigView:
    raw = rt.settings.raw
    templates = rt.renderer.templates
    rules = [
        {"id": rule_id, "title": templates[rule_id].title if rule_id in templates else "",
         "enabled": spec.enabled, "indicator": rt.renderer.indicators.get(rule_id, "info")}
        for rule_id, spec in rt.settings.rules.items()
    ]
    payers = [
        {"name": name, "display": profile.get("display", ""), "match": text(profile.get("match")),
         "waste_modifiers": text(profile.get("waste_modifiers")),
         "medicare_vaccine_codes": text(profile.get("medicare_vaccine_codes")),
         "multiple_injection_modifier": text(profile.get("multiple_injection_modifier")),
         "self_administered_drugs": text(profile.get("self_administered_drugs")),
         "covered_diagnoses": [(drug, text(codes)) for drug, codes in (profile.get("covered_diagnoses") or {}).items()],
         "frequency": [(drug, text(rule)) for drug, rule in (profile.get("frequency") or {}).items()]}
        for name, profile in raw["payers"]["profiles"].items()
    ]
    drugs = [
        {"key": key, "display": d.get("display", ""), "hcpcs": text(d.get("hcpcs")),
         "billing_unit": text(d.get("billing_unit", "CMS's")), "routes": text(d.get("allowed_routes")),
         "class": d.get("class", ""), "max_dose": text(d.get("max_dose")), "names": text(d.get("names")),
         "codes": text([f"{c.get('system')} {c.get('code')}" for c in d.get("codes", [])])}
        for key, d in raw["drugs"].items()
    ]
    s = rt.settings
    thresholds = [
        ("hooks.close_hook", s.close_hook),
        ("hooks.max_cards", str(s.max_cards)),
        ("server.max_body_bytes", str(s.max_body_bytes)),
        ("server.max_json_depth", str(s.max_json_depth)),
        ("auth.required", text(s.auth.required)),
        ("fhir.allowed_servers", text(list(s.fhir.allowed_servers))),
        ("fhir.deadline_seconds", str(s.fhir.deadline_seconds)),
        ("fhir.max_pages", str(s.fhir.max_pages)),
        ("fhir.max_response_bytes", str(s.fhir.max_response_bytes)),
        *((f"billing.{k}", text(v)) for k, v in (raw.get("billing") or {}).items()),
    ]
    return ConfigView(
        source=str(s.source).rsplit("/", 1)[-1],
        rules=rules,
        payers_default=str(raw["payers"]["default"]),
        payers=payers,
        drugs=drugs,
        thresholds=thresholds,
    )


# ---------------------------------------------------------------- override-rate chart


@dataclass
class Bar:
    y: float
    label: str
    width: float
    rate: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    label_width: int
    bar_area: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]


def chart(stats: Sequence[RuleStats]) -> Chart:
    """Horizontal bars of the override rate of each rule that has feedback; drawn as SVG by the template."""
    label_width, bar_area, row, top = 230, 380, 24, 24
    rated = [s for s in stats if s.override_rate is not None]
    bars = [
        Bar(
            y=top + i * row,
            label=s.rule,
            width=round(bar_area * (s.override_rate or 0), 1),
            rate=f"{(s.override_rate or 0):.0%}",
            title=f"{s.rule}: {s.overridden} overridden of {s.accepted + s.overridden} ({(s.override_rate or 0):.1%})",
        )
        for i, s in enumerate(rated)
    ]
    ticks = [(label_width + bar_area * f, f"{f:.0%}") for f in (0, 0.25, 0.5, 0.75, 1)]
    return Chart(label_width + bar_area + 60, top + max(len(bars), 1) * row + 10, label_width, bar_area, bars, ticks)


def quarter_rows(partb: PartB) -> list[dict[str, str]]:
    """The loaded CMS quarters, newest first."""
    return [
        {"id": q.id, "label": quarter_label(q.id), "dates": f"{q.start} to {q.end}", "codes": str(len(q.codes)),
         "ndcs": str(q.ndc_count) if q.has_crosswalk else "no crosswalk",
         "limits": "yes" if q.has_limits else "no",
         "files": ", ".join(source.split(":")[1] for source in q.sources)}
        for q in reversed(partb.quarters)
    ]


def catalog_rows(rows: list[report.Row]) -> list[dict[str, str]]:
    """A lookup's rows, newest quarter first, with the money as dollars."""
    return [
        {"quarter": quarter_label(r.quarter), "code": r.code, "description": r.description,
         "billing_unit": r.billing_unit, "limit": f"${r.limit:,.3f}" if r.limit is not None else "\u2014",
         "ndc": r.ndc or "", "package": r.package or "", "names": ", ".join(r.names[:6])}
        for r in sorted(rows, key=lambda r: (r.quarter, r.code), reverse=True)
    ]
