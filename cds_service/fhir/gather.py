"""A hook call's resources, in one place: what was prefetched, what the FHIR server gives for the rest, read and
checked as FHIR R4 (fhir.parse), and the Medications that administrations and orders reference but that nobody
sent (read from the server; a 404 leaves the drug unidentified)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.fhir import parse, prefetch
from cds_service.fhir.prefetch import Client, ClientFactory


def gather(
    *,
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    sent: Mapping[str, Any],
    draft_orders: Mapping[str, Any] | None,
    plain_text: bool,
    fhir_server: str | None,
    token: str | None,
    allowed_servers: tuple[str, ...],
    make_client: ClientFactory,
    max_pages: int,
) -> parse.Resources:
    """Every resource the call needs; FhirDataUnavailable (412) when a key can be neither had nor fetched.
    `sent` is the request's prefetch and `draft_orders` its context's; `plain_text` says the request's JSON text
    was plain (jsontext.loads_plain), which lets parse read what it sent with the PLAIN Structs (fhir.structs)."""
    values, client = prefetch.resolve(
        templates=templates, context=context, prefetch=sent, fhir_server=fhir_server, token=token,
        allowed_servers=allowed_servers, make_client=make_client, max_pages=max_pages,
    )
    # What the body sent was read from its text; what the FHIR server answered was not.
    plain = {*sent, parse.DRAFT_ORDERS} if plain_text else ()
    resources = parse.read(values, draft_orders, context.get("encounterId"), plain)
    missing = unresolved_medications(resources)
    if missing:
        client = client or prefetch.connect(fhir_server, token, allowed_servers, make_client)
        fetch_medications(resources, client, missing)
    return resources


def unresolved_medications(resources: parse.Resources) -> list[str]:
    """Medication references ('Medication/id') that are neither contained nor in a Bundle."""
    found = []
    for resource in [*resources.administrations, *resources.orders]:
        reference = getattr(resource.medicationReference, "reference", None)
        if not reference or reference.startswith("#") or reference in resources.medications:
            continue
        key = parse.ref_key(reference)
        if key and key.startswith("Medication/") and key not in resources.medications:
            found.append(key)
    return sorted(set(found))


def fetch_medications(resources: parse.Resources, client: Client, references: Iterable[str]) -> None:
    """Read the referenced Medications from the FHIR server; a 404 leaves the drug unidentified."""
    fetched = prefetch.fetch_all(client, {ref: ref for ref in references}, max_pages=1)
    for ref, data in fetched.items():
        if data is None:
            continue
        med = parse.validate(f"fetched {ref}", data, resources)
        if med is not None and med.get_resource_type() == "Medication":
            parse.add_medication(resources, med)
