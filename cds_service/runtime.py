"""What a running app holds: settings, store, card renderer, services and the FHIR client factory."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cds_service.cards import CardRenderer
from cds_service.config import Settings
from cds_service.facts import Terms
from cds_service.fhir.client import FhirClient
from cds_service.fhir.prefetch import ClientFactory
from cds_service.protocol import ServiceDef
from cds_service.store import FeedbackStore


@dataclass
class Runtime:
    settings: Settings
    terms: Terms
    store: FeedbackStore
    renderer: CardRenderer
    services: dict[str, ServiceDef]
    make_fhir_client: ClientFactory


def fhir_client_factory(settings: Settings) -> ClientFactory:
    """Clients for one request each: the deadline starts when the request's first fetch is needed."""

    def make(base_url: str, token: str | None) -> FhirClient:
        return FhirClient(
            base_url,
            token,
            deadline=time.monotonic() + settings.fhir.deadline_seconds,
            max_bytes=settings.fhir.max_response_bytes,
        )

    return make


def terms_of(settings: Settings) -> Terms:
    """What facts read from configuration, built once per app."""
    return Terms(
        catalog=settings.catalog,
        payers=settings.payers,
        policy=settings.policy,
        facility_classes=settings.facility_encounter_classes,
        facility_pos=settings.facility_pos_codes,
    )
