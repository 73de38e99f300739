"""Readiness: 200 when the service can serve, including that its store answers."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from cds_service.errors import StoreUnavailable
from cds_service.openapi import document
from cds_service.partb import report
from cds_service.web.errors import operation_outcome

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    rt = current_app.extensions["cds"]
    if not rt.store.ping():
        response = operation_outcome(503, "transient", "The store does not answer.")
        response.headers["Retry-After"] = str(StoreUnavailable.retry_after_seconds)
        return response
    return jsonify({"status": "ok", "store": "ok", "cms_quarters": report.summary(rt.settings.partb)})


@bp.get("/")
def index() -> Response:
    """Where things are, for a person or a program that starts at the root."""
    rt = current_app.extensions["cds"]
    console = "/console/" if rt.settings.console_enabled else None
    return jsonify({
        "service": "Injection billing CDS service (CDS Hooks 2.0)",
        "discovery": "/cds-services",
        "console": console,
        "openapi": "/openapi.json",
        "health": "/healthz",
        "metrics": "/metrics",
        "services": sorted(f"/cds-services/{service_id}" for service_id in rt.services),
    })


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document(current_app.extensions["cds"].services))
