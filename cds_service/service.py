"""One hook call, end to end: body -> resources (fhir.gather) -> facts -> rules -> cards -> the store."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from cds_service import facts, protocol, rules
from cds_service.cards import CardRenderer, payment_at_risk
from cds_service.config import Settings
from cds_service.errors import CDSError
from cds_service.fhir import parse
from cds_service.fhir.gather import gather
from cds_service.fhir.prefetch import ClientFactory
from cds_service.protocol import ServiceDef
from cds_service.rules.model import Finding
from cds_service.store import FeedbackStore

log = logging.getLogger("cds_service.requests")


@dataclass(frozen=True)
class Outcome:
    response: dict[str, Any]
    findings: tuple[Finding, ...]
    # Per finding, Medicare Part B's payment limit for the drug line it is about (None: no priced drug line).
    at_risk: tuple[Decimal | None, ...] = ()
    repairs: tuple[str, ...] = ()  # near-misses of R4 repaired in its resources: "MedicationRequest at where: what"


@dataclass
class Call:
    """One service call as its logs see it: handle_hook fills it in as it goes, and the evaluation log's row and
    the access log's line are written from it, whatever the outcome."""

    service_id: str
    started: float = field(default_factory=time.perf_counter)
    hook_instance: str | None = None  # once the body names one (cut to 256 characters)
    status: int = 500
    rules_fired: list[str] = field(default_factory=list)
    card_uuids: list[str] = field(default_factory=list)
    repairs: tuple[str, ...] = ()
    refusal: str | None = None  # why a call was refused before it was read (a 401's reason)

    def duration_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 1)


Reader = Callable[[], tuple[Any, bool]]  # the call's body, and whether its text is plain (jsontext.loads_plain)


def handle_hook(
    call: Call,
    read: Reader,
    service: ServiceDef,
    *,
    settings: Settings,
    terms: facts.Terms,
    renderer: CardRenderer,
    make_client: ClientFactory,
    store: FeedbackStore | None,
) -> Outcome:
    """Answer one CDS Hooks call with cards: read and check the body, gather the resources, work out the facts,
    run the rules, render the cards, and record them and the call in `store` (None: record nothing). Raises
    CDSError: 400 for a body that is no valid call, 412 (FhirDataUnavailable) when data cannot be had."""
    try:
        body, plain_text = read()
        if isinstance(body, dict) and isinstance(body.get("hookInstance"), str):
            call.hook_instance = body["hookInstance"][:256]
        request = protocol.parse_hook_request(body, service, settings.max_cards)
        resources = gather(
            templates=service.prefetch,
            context=request.context,
            sent=request.prefetch,
            draft_orders=request.context.get("draftOrders") if service.kind == "order-sign" else None,
            plain_text=plain_text,
            fhir_server=request.fhir_server,
            token=request.access_token,
            allowed_servers=settings.fhir.allowed_servers,
            make_client=make_client,
            max_pages=settings.fhir.max_pages,
        )
        patient_id, encounter_id = str(request.context["patientId"]), request.context.get("encounterId")
        hook_instance, options = request.hook_instance, request.options
        # The body's JSON is read into Structs now: let go of here, while its objects are still in the CPU's
        # caches, and the rest of the call (facts, findings, cards) takes their memory while it is cached too. Freed
        # at the end of the call instead, a worker on one core answers about 3.5% fewer calls (benchmarks/ab.py).
        # What the cards need of it (the captured ChargeItems' JSON) is in `resources`.
        del body, request
        outcome = evaluate(
            resources,
            settings=settings,
            terms=terms,
            renderer=renderer,
            hook_kind=service.kind,
            patient_id=patient_id,
            encounter_id=encounter_id,
            hook_instance=hook_instance,
            options=options,
        )
        cards = outcome.response["cards"]
        call.status, call.rules_fired, call.repairs = 200, sorted({f.rule for f in outcome.findings}), outcome.repairs
        call.card_uuids = [card["uuid"] for card in cards if "uuid" in card]
        if store is not None and cards:
            store.record_cards(service.id, hook_instance, cards)
        return outcome
    except CDSError as exc:
        call.status = exc.status
        raise
    finally:
        if store is not None:
            record(store, call)


def record(store: FeedbackStore, call: Call) -> None:
    """Queue the call's row of the evaluation log; it is written behind the answer, which never waits on it.

    A database failure is logged by the store's writer (store_write_failed); this guard is for the queueing.
    """
    try:
        store.record_evaluation(call.service_id, call.hook_instance, call.status, call.duration_ms(),
                                call.rules_fired, call.card_uuids, repairs=call.repairs, refusal=call.refusal)
    except Exception as exc:  # the answer stands whatever the log's database does
        cause = getattr(exc, "orig", None) or exc  # the driver's message, without the statement and its parameters
        log.error(json.dumps({
            "event": "evaluation_log_failed",
            "service": call.service_id,
            "hookInstance": call.hook_instance,
            "status": call.status,
            "error": type(exc).__name__,
            "detail": str(cause).splitlines()[0][:200] if str(cause) else "",
        }))


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
