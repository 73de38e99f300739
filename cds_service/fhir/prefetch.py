"""Fill the prefetch keys the EHR did not send, from its FHIR server, concurrently and within a deadline."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Protocol
from urllib.parse import quote

from cds_service.errors import FhirDataUnavailable
from cds_service.fhir.client import is_allowed

TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z0-9_]+)\s*\}\}")


class Client(Protocol):
    deadline: float

    def search(self, relative: str, max_pages: int) -> dict[str, Any]: ...

    def read(self, relative: str) -> dict[str, Any] | None: ...


ClientFactory = Callable[[str, str | None], Client]


def fill(template: str, context: Mapping[str, Any]) -> str | None:
    """Replace the context tokens of a prefetch template; None when a token has no primitive value."""
    missing = False

    def sub(match: re.Match[str]) -> str:
        nonlocal missing
        value = context.get(match.group(1))
        if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
            missing = True
            return ""
        return quote(str(value), safe="")

    query = TOKEN.sub(sub, template)
    return None if missing else query


def is_read(query: str) -> bool:
    """`Encounter/123` is a read; `Condition?patient=1` is a search."""
    return "?" not in query and query.count("/") == 1


def usable(value: Any) -> Any:
    """A prefetched OperationOutcome is the EHR saying it could not get the data: treat it as null."""
    if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
        return None
    return value


def resolve(
    *,
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    prefetch: Mapping[str, Any],
    fhir_server: str | None,
    token: str | None,
    allowed_servers: tuple[str, ...],
    make_client: ClientFactory,
    max_pages: int,
) -> tuple[dict[str, Any], Client | None]:
    """Return every prefetch key's data (None for 'no data') and the client used, if any.

    Sent keys are used as they are, and a key sent as null is never fetched. A key whose template
    cannot be filled from this context is not needed. Every other key is fetched, and any that
    cannot be had raises FhirDataUnavailable (HTTP 412).
    """
    values: dict[str, Any] = {}
    to_fetch: dict[str, str] = {}
    for key, template in templates.items():
        if key in prefetch:
            values[key] = usable(prefetch[key])
            continue
        query = fill(template, context)
        if query is None:
            values[key] = None
        else:
            to_fetch[key] = query
    if not to_fetch:
        return values, None
    client = connect(fhir_server, token, allowed_servers, make_client)
    values.update(fetch_all(client, to_fetch, max_pages))
    return values, client


def connect(
    fhir_server: str | None, token: str | None, allowed_servers: tuple[str, ...], make_client: ClientFactory
) -> Client:
    """A client for the request's fhirServer, or 412 when there is none or it is not allowed."""
    if not fhir_server:
        raise FhirDataUnavailable("Data this service needs was not prefetched and no fhirServer was given.")
    if not is_allowed(fhir_server, allowed_servers):
        raise FhirDataUnavailable("Data this service needs was not prefetched, and fhirServer is not allowed.")
    return make_client(fhir_server, token)


def fetch_all(client: Client, queries: Mapping[str, str], max_pages: int) -> dict[str, Any]:
    """Run the queries concurrently; all must finish before the client's deadline."""
    pool = ThreadPoolExecutor(max_workers=min(8, len(queries)), thread_name_prefix="prefetch")
    try:
        futures = {
            key: pool.submit(client.read, query) if is_read(query) else pool.submit(client.search, query, max_pages)
            for key, query in queries.items()
        }
        done, pending = wait(
            futures.values(), timeout=max(0.0, client.deadline - time.monotonic()), return_when=FIRST_EXCEPTION
        )
        for future in done:
            error = future.exception()
            if error is not None:
                raise error
        if pending:
            raise FhirDataUnavailable("The FHIR server did not answer in time.")
        return {key: future.result() for key, future in futures.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
