"""GET /metrics (Prometheus text format, no JWT) and the per-request counting of the CDS Hooks endpoints."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request

from cds_service import metrics

bp = Blueprint("metrics", __name__)

# The views of cds_service.web.hooks, and the endpoint label each is counted under.
ENDPOINTS = {"hooks.call": "call", "hooks.feedback": "feedback", "hooks.discovery": "discovery"}


@bp.get("/metrics")
def scrape() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, status=200, content_type=content_type)


def install(app: Flask) -> None:
    """Serve /metrics and count every CDS Hooks request; install before any hook that may refuse a request."""
    app.before_request(_started)
    app.after_request(_finished)
    app.register_blueprint(bp)


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _finished(response: Response) -> Response:
    endpoint = ENDPOINTS.get(request.endpoint or "")
    if endpoint is None or request.method == "OPTIONS":
        return response
    if endpoint == "discovery":
        service = "discovery"
    else:
        service_id = str((request.view_args or {}).get("service_id"))
        service = service_id if service_id in current_app.extensions["cds"].services else "unknown"
    started = g.get("metrics_started")
    metrics.observe_request(
        service, endpoint, response.status_code, None if started is None else time.perf_counter() - started
    )
    return response
