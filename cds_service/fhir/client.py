"""Calls back to the EHR's FHIR server: allow-listed, no redirects, bounded in size and time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3

from cds_service import metrics
from cds_service.errors import FhirDataUnavailable
from cds_service.jsontext import too_deep

DEFAULT_PORTS = {"http": 80, "https": 443}
CHUNK = 64 * 1024
DEFAULT_MAX_DEPTH = 100  # server.max_json_depth's default


def _origin_and_path(url: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return None  # dot segments get resolved on the way: the URL would leave the path it seems to be under
    return parts.scheme, parts.hostname.lower(), port or 0, parts.path.rstrip("/")


def is_under(url: str, base: str) -> bool:
    """True when url is base itself or below it, matched on whole path segments (same scheme, host, port)."""
    a, b = _origin_and_path(url), _origin_and_path(base)
    if a is None or b is None or a[:3] != b[:3]:
        return False
    return a[3] == b[3] or a[3].startswith(b[3] + "/")


def is_allowed(server: str, allowed: Iterable[str]) -> bool:
    """A fhirServer may be called only when it sits under an allow-listed base URL."""
    return any(is_under(server, entry) for entry in allowed)


class FetchFailed(FhirDataUnavailable):
    """FhirDataUnavailable from one GET, with the outcome it is counted under (cds_service.metrics.FHIR_OUTCOMES)."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def is_timeout(exc: requests.RequestException) -> bool:
    """A connect or read timeout; requests reports one met while streaming the body as a ConnectionError."""
    return isinstance(exc, requests.Timeout) or any(isinstance(a, urllib3.exceptions.TimeoutError) for a in exc.args)


class FhirClient:
    """A FHIR REST client for one hook call: one base URL, one bearer token, one deadline."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        deadline: float,
        max_bytes: int,
        max_depth: int = DEFAULT_MAX_DEPTH,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.deadline = deadline  # time.monotonic() value
        self.max_bytes = max_bytes
        self.max_depth = max_depth  # as for a hook's body: the validators read what JSON lets through
        self.session = session or requests.Session()
        self.session.trust_env = False  # never route the token through an environment proxy

    def __repr__(self) -> str:  # never show the token
        return f"FhirClient({self.base_url!r})"

    def url(self, relative: str) -> str:
        return urljoin(self.base_url + "/", relative.lstrip("/"))

    def get(self, url: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """GET a URL below the base; return its JSON, or None for a 404/410 when missing_ok.

        Each call is counted in cds_fhir_fetches_total by outcome, and timed once the GET is sent.
        """
        outcome, sent = "unreachable", None  # unreachable unless a branch below says what happened
        try:
            if not is_under(url, self.base_url):
                raise FetchFailed("refused", "A FHIR link pointed outside the allowed FHIR server.")
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise FetchFailed("timeout", "The FHIR server did not answer in time.")
            headers = {"Accept": "application/fhir+json, application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            sent = time.perf_counter()
            try:
                with self.session.get(
                    url, headers=headers, timeout=(min(remaining, 3.05), remaining), allow_redirects=False, stream=True
                ) as resp:
                    if resp.status_code in (404, 410) and missing_ok:
                        outcome = "not_found"
                        return None
                    if resp.status_code != 200:
                        raise FetchFailed(
                            "not_found" if resp.status_code in (404, 410) else "http_error",
                            f"The FHIR server answered HTTP {resp.status_code}.",
                        )
                    body = self._read(resp)
            except requests.RequestException as exc:
                raise FetchFailed(
                    "timeout" if is_timeout(exc) else "unreachable", "The FHIR server could not be reached."
                ) from None
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                raise FetchFailed("invalid", "The FHIR server answered with something that is not JSON.") from None
            if too_deep(data, self.max_depth):
                raise FetchFailed("invalid", "The FHIR server answered with JSON nested too deeply.")
            if not isinstance(data, dict):
                raise FetchFailed("invalid", "The FHIR server answered with something that is not a resource.")
            outcome = "ok"
            return data
        except FetchFailed as exc:
            outcome = exc.outcome
            raise
        finally:
            metrics.observe_fhir_fetch(outcome, None if sent is None else time.perf_counter() - sent)

    def _read(self, resp: requests.Response) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchFailed("too_large", "The FHIR server's answer is too large.")
        chunks, size = [], 0
        for chunk in resp.iter_content(CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchFailed("too_large", "The FHIR server's answer is too large.")
            if time.monotonic() > self.deadline:
                raise FetchFailed("timeout", "The FHIR server did not answer in time.")
            chunks.append(chunk)
        return b"".join(chunks)

    def search(self, relative: str, max_pages: int) -> dict[str, Any]:
        """Run a search and follow `next` links up to max_pages; return one searchset Bundle."""
        bundle = self.get(self.url(relative))
        assert bundle is not None
        if bundle.get("resourceType") != "Bundle":
            raise FhirDataUnavailable("The FHIR server answered a search without a Bundle.")
        merged = dict(bundle)
        merged["entry"] = list(bundle.get("entry") or [])
        page, pages = bundle, 1
        while pages < max_pages:
            next_url = next((link.get("url") for link in page.get("link") or []
                             if isinstance(link, dict) and link.get("relation") == "next"), None)
            if not next_url:
                break
            page = self.get(urljoin(self.base_url + "/", next_url)) or {}
            merged["entry"] += list(page.get("entry") or [])
            pages += 1
        merged.pop("link", None)
        return merged

    def read(self, relative: str) -> dict[str, Any] | None:
        """Read one resource; None when the server says it does not exist."""
        return self.get(self.url(relative), missing_ok=True)
