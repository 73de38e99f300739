"""One hook call, end to end: prefetch -> resources -> facts -> rules -> cards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from cds_service import facts, rules
from cds_service.cards import CardRenderer, payment_at_risk
from cds_service.config import Settings
from cds_service.fhir import parse
from cds_service.fhir.gather import gather
from cds_service.fhir.prefetch import ClientFactory
from cds_service.protocol import HookRequest, ServiceDef
from cds_service.rules.model import Finding
from cds_service.store import FeedbackStore


@dataclass(frozen=True)
class Outcome:
    response: dict[str, Any]
    findings: tuple[Finding, ...]
    # Per finding, Medicare Part B's payment limit for the drug line it is about (None: no priced drug line).
    at_risk: tuple[Decimal | None, ...] = ()
    repairs: tuple[str, ...] = ()  # near-misses of R4 repaired in its resources: "MedicationRequest at where: what"


def handle_hook(
    request: HookRequest,
    service: ServiceDef,
    *,
    settings: Settings,
    terms: facts.Terms,
    renderer: CardRenderer,
    make_client: ClientFactory,
    store: FeedbackStore | None,
) -> Outcome:
    """Answer one CDS Hooks call with cards; raises FhirDataUnavailable (412) when data cannot be had."""
    resources = gather(
        templates=service.prefetch,
        context=request.context,
        sent=request.prefetch,
        draft_orders=request.context.get("draftOrders") if service.kind == "order-sign" else None,
        # What the body sent was read from its text; what the FHIR server answered was not.
        plain={*request.prefetch, parse.DRAFT_ORDERS} if request.plain_text else (),
        fhir_server=request.fhir_server,
        token=request.access_token,
        allowed_servers=settings.fhir.allowed_servers,
        make_client=make_client,
        max_pages=settings.fhir.max_pages,
    )
    outcome = evaluate(
        resources,
        settings=settings,
        terms=terms,
        renderer=renderer,
        hook_kind=service.kind,
        patient_id=str(request.context["patientId"]),
        encounter_id=request.context.get("encounterId"),
        hook_instance=request.hook_instance,
        options=request.options,
    )
    cards = outcome.response["cards"]
    if store is not None and cards:
        store.record_cards(service.id, request.hook_instance, cards)
    return outcome


def evaluate(
    resources: parse.Resources,
    *,
    settings: Settings,
    terms: facts.Terms,
    renderer: CardRenderer,
    hook_kind: Literal["order-sign", "encounter"],
    patient_id: str,
    encounter_id: str | None,
    hook_instance: str,
    options: Mapping[str, Any],
) -> Outcome:
    """Cards for resources already read: the part of a hook call the retrospective audit shares."""
    visit = rules.prepare(facts.build(
        resources, terms, hook_kind=hook_kind, patient_id=patient_id, encounter_id=encounter_id
    ))
    findings = tuple(rules.evaluate(visit, enabled_rules(settings, options)))
    cards = renderer.render(
        findings, visit, hook_instance, resources.charge_json, max_cards=options.get("max-cards")
    )
    repairs = tuple(f"{fixed.resource_type} at {fixed.where}: {note}" for fixed in visit.repaired
                    for note in fixed.problems)
    return Outcome({"cards": cards}, findings, tuple(payment_at_risk(f, visit) for f in findings), repairs)


def enabled_rules(settings: Settings, options: Mapping[str, Any]) -> frozenset[str]:
    """The configuration's enabled rules, less the groups this call switched off."""
    off = {rule_id for group, ids in rules.GROUPS.items() if options.get(group) is False for rule_id in ids}
    if not off:
        return settings.enabled_rules()
    return settings.enabled_rules() - off
