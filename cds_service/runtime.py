"""What a running app holds: settings, store, card renderer, services and the FHIR client factory."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from cds_service import protocol, rules
from cds_service.cards import CardRenderer, CardTemplate
from cds_service.config import Settings
from cds_service.drugs import Formulary
from cds_service.errors import ConfigError
from cds_service.facts import Terms
from cds_service.fhir import parse
from cds_service.fhir.client import FhirClient
from cds_service.fhir.prefetch import ClientFactory
from cds_service.protocol import ServiceDef
from cds_service.service import Call, Outcome, Reader, handle_hook
from cds_service.store import FeedbackStore
from cds_service.trust import JwtVerifier


@dataclass
class Runtime:
    settings: Settings
    terms: Terms
    store: FeedbackStore
    renderer: CardRenderer
    services: dict[str, ServiceDef]
    make_fhir_client: ClientFactory
    verifier: JwtVerifier | None = None  # None when auth.required is false

    def answer(self, call: Call, read: Reader, service: ServiceDef, *, record: bool = True) -> Outcome:
        """Answer a hook call with this runtime (service.handle_hook); record=False keeps it out of the store."""
        return handle_hook(
            call,
            read,
            service,
            settings=self.settings,
            terms=self.terms,
            renderer=self.renderer,
            make_client=self.make_fhir_client,
            store=self.store if record else None,
        )


def build(settings: Settings, store: FeedbackStore, templates: dict[str, CardTemplate]) -> Runtime:
    """Everything a request needs that comes from configuration; rebuilt whole on a reload."""
    missing = sorted(rule_id for rule_id in settings.enabled_rules() if rule_id not in rules.RULES)
    missing += sorted(rule_id for rule_id in settings.enabled_rules() if rule_id not in templates)
    if missing:
        raise ConfigError(settings.source, [f"rules/{rule_id}: not implemented yet" for rule_id in missing])
    verifier = JwtVerifier.of(settings.auth, store) if settings.auth.required else None
    parse.prepare()  # generate the FHIR validators now rather than on the first hook call
    protocol.compile_checks()
    return Runtime(
        settings=settings,
        terms=terms_of(settings),
        store=store,
        renderer=renderer_of(settings, templates),
        services=protocol.services(settings.close_hook),
        make_fhir_client=fhir_client_factory(settings),
        verifier=verifier,
    )


def fhir_client_factory(settings: Settings) -> ClientFactory:
    """Clients for one request each: the deadline starts when the request's first fetch is needed."""

    def make(base_url: str, token: str | None) -> FhirClient:
        return FhirClient(
            base_url,
            token,
            deadline=time.monotonic() + settings.fhir.deadline_seconds,
            max_bytes=settings.fhir.max_response_bytes,
            max_depth=settings.max_json_depth,
        )

    return make


def renderer_of(settings: Settings, templates: Mapping[str, CardTemplate]) -> CardRenderer:
    """The card renderer: the templates, with the indicators the configuration sets per rule."""
    indicators = {rule_id: r.indicator for rule_id, r in settings.rules.items() if r.indicator}
    return CardRenderer(templates, indicators)


def terms_of(settings: Settings) -> Terms:
    """What facts read from configuration, built once per app."""
    return Terms(
        formulary=Formulary(settings.catalog, settings.partb, settings.code_classes, settings.policy.noc_codes),
        payers=settings.payers,
        policy=settings.policy,
        facility_classes=settings.facility_encounter_classes,
        facility_pos=settings.facility_pos_codes,
    )
