"""Trusting CDS clients (CDS Hooks 2.0): every call carries a JWT signed by a trusted issuer.

The token's header must say typ JWT with a kid and an asymmetric algorithm; the key comes from the
issuer's JWK Set (configured URL, file or inline; a `jku` only when allow-listed); the claims iss, aud
(exactly the URL called), exp, iat and jti are required; a jti is accepted once, across workers and
instances, through the store. Every failure is Unauthorized with a reason for the log (the client sees a
bare 401). No web framework here: web.auth applies it to requests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from cds_service.config import AuthSettings
from cds_service.errors import Unauthorized
from cds_service.store import FeedbackStore

log = logging.getLogger("cds_service.auth")

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256")
KEY_TYPES = {"ES384": "EC", "ES256": "EC", "RS384": "RSA", "RS256": "RSA"}
JWKS_TTL_SECONDS = 3600
REFRESH_INTERVAL_SECONDS = 60  # at most one refresh per issuer per minute for an unknown kid
MAX_JWKS_BYTES = 256 * 1024
MAX_TOKEN_BYTES = 16 * 1024


class JwksUnavailable(Exception):
    """A JWK Set could not be had."""


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_jwks(url: str) -> dict[str, Any]:
    """GET a JWK Set: https (http only on loopback), no redirects, bounded size and time."""
    if not (url.startswith("https://") or (url.startswith("http://") and is_loopback(url))):
        raise JwksUnavailable("JWK Set URL must be https")
    try:
        with requests.get(url, timeout=(3, 5), allow_redirects=False, stream=True,
                          headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise JwksUnavailable(f"HTTP {resp.status_code}")
            body = resp.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise JwksUnavailable(type(exc).__name__) from None
    if len(body) > MAX_JWKS_BYTES:
        raise JwksUnavailable("JWK Set too large")
    try:
        data = json.loads(body)
    except ValueError:
        raise JwksUnavailable("JWK Set is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksUnavailable("not a JWK Set")
    return data


@dataclass(frozen=True)
class VerifyKey:
    key: Any  # a cryptography public key
    kty: str
    alg: str | None  # the JWK's declared alg, when it declares one


@dataclass
class KeySource:
    """One JWK Set: inline or from a file (fixed), or from a URL (cached, refreshed on an unknown kid)."""

    url: str | None = None
    keys: dict[str, VerifyKey] = field(default_factory=dict)
    fetched_at: float | None = None  # time.monotonic() of the last good fetch
    refreshed_at: float | None = None
    failed_at: float | None = None
    fetch: Callable[[str], dict[str, Any]] = fetch_jwks
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def parse(jwks: Mapping[str, Any]) -> dict[str, VerifyKey]:
        """The usable public EC and RSA keys of a JWK Set, by kid; any other key is skipped."""
        keys = {}
        for entry in jwks.get("keys", []):
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("kty") not in ("EC", "RSA") or "d" in entry or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[entry["kid"]] = VerifyKey(jwt.PyJWK(entry).key, entry["kty"], entry.get("alg"))
            except (jwt.PyJWTError, ValueError, TypeError):
                log.warning("skipping an unusable key in a JWK Set")
        return keys

    def key(self, kid: str) -> VerifyKey | None:
        if self.url is None:
            return self.keys.get(kid)
        now = time.monotonic()
        with self.lock:
            due = self.fetched_at is None or now - self.fetched_at > JWKS_TTL_SECONDS
            if not due and kid not in self.keys and not recent(self.refreshed_at, now):
                self.refreshed_at = now  # one refresh for an unknown kid, then at most one a minute
                due = True
            if due and not recent(self.failed_at, now):  # a failing JWK Set host is retried once a minute
                try:
                    self.keys = self.parse(self.fetch(self.url))
                    self.fetched_at = now
                except JwksUnavailable as exc:
                    self.failed_at = now
                    log.warning("JWK Set fetch failed: %s", exc)
            return self.keys.get(kid)


def recent(moment: float | None, now: float) -> bool:
    return moment is not None and now - moment <= REFRESH_INTERVAL_SECONDS


@dataclass
class Issuer:
    iss: str
    source: KeySource
    jku_sources: dict[str, KeySource]
    tenant: str | None = None


class JwtVerifier:
    """Verify CDS Hooks JWTs against the configured issuers."""

    def __init__(
        self,
        issuers: list[Mapping[str, Any]],
        *,
        config_dir: Path,
        clock_skew: float,
        store: FeedbackStore,
        fetch: Callable[[str], dict[str, Any]] = fetch_jwks,
    ) -> None:
        self.clock_skew = clock_skew
        self.store = store
        self.issuers: dict[str, Issuer] = {}
        for spec in issuers:
            if "jwks" in spec:
                source = KeySource(keys=KeySource.parse(spec["jwks"]))
            elif "jwks_file" in spec:
                path = (config_dir / spec["jwks_file"]).resolve()
                source = KeySource(keys=KeySource.parse(json.loads(path.read_text(encoding="utf-8"))))
            else:
                source = KeySource(url=spec["jwks_url"], fetch=fetch)
            jku = {url: KeySource(url=url, fetch=fetch) for url in spec.get("jku_allowed", [])}
            if source.url is not None:
                jku.setdefault(source.url, source)  # a jku naming the configured JWK Set is that set
            self.issuers[spec["iss"]] = Issuer(spec["iss"], source, jku, spec.get("tenant"))

    @classmethod
    def of(cls, auth: AuthSettings, store: FeedbackStore) -> JwtVerifier:
        """The verifier the auth settings describe."""
        return cls(list(auth.trusted_issuers), config_dir=auth.config_dir, clock_skew=auth.clock_skew_seconds,
                   store=store)

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """Return the verified claims, or raise Unauthorized."""
        try:
            return self._verify(token, audience)
        except (jwt.PyJWTError, ValueError, KeyError, TypeError, OverflowError) as exc:  # exp=1e20: Overflow
            raise Unauthorized(reason=f"token not valid: {type(exc).__name__}") from None

    def _verify(self, token: str, audience: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized(reason="token too large")
        header = jwt.get_unverified_header(token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or str(header.get("typ", "")).upper() != "JWT" or not isinstance(kid, str):
            raise Unauthorized(reason="header: alg not allowed, typ not JWT, or no kid")
        unverified = jwt.decode(token, options={"verify_signature": False})
        issuer = self.issuers.get(unverified.get("iss"))
        if issuer is None:
            raise Unauthorized(reason="issuer not trusted")
        # A jku is honoured only when allow-listed for this issuer; any other is never fetched, and the
        # key must then come from the issuer's configured JWK Set.
        source = issuer.jku_sources.get(header.get("jku") or "", issuer.source)
        key = source.key(kid)
        if key is None or KEY_TYPES[alg] != key.kty or key.alg not in (alg, None):
            raise Unauthorized(reason="no key of the issuer for this kid and alg")
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer.iss,
            leeway=self.clock_skew,
            options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_iat": True},
        )
        if isinstance(claims["aud"], list) and claims["aud"] != [audience]:
            raise Unauthorized(reason="aud is not exactly the URL called")
        if issuer.tenant is not None and claims.get("tenant") != issuer.tenant:
            raise Unauthorized(reason="tenant not the configured one")
        if float(claims["iat"]) > time.time() + self.clock_skew:
            raise Unauthorized(reason="iat in the future")
        expires = dt.datetime.fromtimestamp(float(claims["exp"]) + self.clock_skew, dt.UTC)
        if not self.store.claim_jti(issuer.iss, str(claims["jti"]), expires):
            raise Unauthorized(reason="jti already used (a replay)")
        return claims
