"""Trusting CDS clients, on each request: the JWT check (cds_service.trust) before discovery, service and feedback
calls, the refusal's trace (a log line and an evaluation row, never the token), and the bearer tokens of the
report and the metrics."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Request

from cds_service.errors import Unauthorized
from cds_service.service import Call, record
from cds_service.web.current import current_request

log = logging.getLogger("cds_service.auth")

# The WSGI environ key under which web.lane says why it refused a call's JWT (no client can set a key without
# the HTTP_ prefix), so that the app refuses it without checking the signature a second time.
REFUSED = "cds_service.jwt_refused"


def require_bearer(token: str) -> None:
    """The request must carry `Authorization: Bearer <token>` (the reports' and the metrics' own tokens, not a
    JWT); else 401."""
    req = current_request()
    scheme, _, given = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        log.info(json.dumps({"event": "auth_refused", "status": 401, "reason": "no bearer token, or not the "
                             "configured one", "path": req.path[:64], "address": req.remote_addr}))
        raise Unauthorized(reason="no bearer token, or not the configured one")


def audience_of(req: Request, public_base_url: str) -> str:
    """The URL that was called: the configured public base plus the path, else the request's own URL."""
    return audience(public_base_url, req.path, lambda: req.base_url)


def audience(public_base_url: str, path: str, own_url: Callable[[], str]) -> str:
    """The configured public base plus the path, else the URL the request itself names (here and in web.lane)."""
    return public_base_url.rstrip("/") + path if public_base_url else own_url()


def bearer_token(req: Request) -> str:
    return bearer_of(req.headers.get("Authorization", ""))


def bearer_of(header: str) -> str:
    """The token of an `Authorization: Bearer <token>` header; Unauthorized without one."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(reason="no bearer token")
    return token.strip()


def install(app: Flask) -> None:
    """Require a valid JWT on discovery, service and feedback calls (not on preflights or health)."""

    @app.before_request
    def _require_jwt() -> None:
        rt = app.extensions["cds"]
        if rt.verifier is None:
            return
        req = current_request()
        if req.method == "OPTIONS" or not req.path.startswith("/cds-services"):
            return
        public_base_url = rt.settings.auth.public_base_url
        started = time.perf_counter()
        try:
            reason = req.environ.get(REFUSED)  # the hook lane has checked this token already
            if reason is not None:
                raise Unauthorized(reason=reason)
            rt.verifier.verify(bearer_token(req), audience_of(req, public_base_url))
        except Unauthorized as exc:
            refused(rt, req, exc.reason, started)
            raise


def refused(rt: Any, req: Request, reason: str, started: float) -> None:
    """A refused call leaves a trace: a log line with the reason and the client's address (never the token),
    and a row of the evaluation log (status 401, refusal) under the service called ("discovery"; "unknown" for
    a path that names no service)."""
    parts = req.path.strip("/").split("/")
    service = "discovery" if len(parts) == 1 else parts[1] if parts[1] in rt.services else "unknown"
    if len(parts) > 2 and service != "unknown":
        service += "/feedback" if parts[2] == "feedback" else "/unknown"
    log.info(json.dumps({"event": "auth_refused", "status": 401, "reason": reason, "path_service": service,
                         "address": req.remote_addr}))
    record(rt.store, Call(service, started, status=401, refusal=reason))
