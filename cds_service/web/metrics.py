"""GET /metrics (Prometheus text format; with metrics.token, only for `Authorization: Bearer <token>`) and the
per-request counting of the CDS Hooks endpoints."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app

from cds_service import metrics
from cds_service.web.auth import require_bearer
from cds_service.web.current import current_g, current_request

bp = Blueprint("metrics", __name__)

# The views of cds_service.web.hooks, and the endpoint label each is counted under.
ENDPOINTS = {"hooks.call": "call", "hooks.feedback": "feedback", "hooks.discovery": "discovery"}


@bp.get("/metrics")
def scrape() -> Response:
    token = current_app.extensions["cds"].settings.metrics_token
    if token:  # else open, for a scraper on a private network
        require_bearer(token)
    body, content_type = metrics.exposition()
    return Response(body, status=200, content_type=content_type)


def install(app: Flask) -> None:
    """Serve /metrics and count every CDS Hooks request; install before any hook that may refuse a request."""

    def finished(response: Response) -> Response:
        return _finished(app, response)

    app.before_request(_started)
    app.after_request(finished)
    app.register_blueprint(bp)


def _started() -> None:
    current_g().metrics_started = time.perf_counter()


def _finished(app: Flask, response: Response) -> Response:
    req = current_request()
    endpoint = ENDPOINTS.get(req.endpoint or "")
    if endpoint is None or req.method == "OPTIONS":
        return response
    if endpoint == "discovery":
        service = "discovery"
    else:
        service_id = str((req.view_args or {}).get("service_id"))
        service = service_id if service_id in app.extensions["cds"].services else "unknown"
    started = current_g().get("metrics_started")
    metrics.observe_request(
        service, endpoint, response.status_code, None if started is None else time.perf_counter() - started
    )
    return response
