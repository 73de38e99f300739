"""The feedback report as JSON, for health IT teams: guarded by its own bearer token (reports.token)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from cds_service import analytics
from cds_service.errors import InvalidHookRequest, StoreUnavailable, UnknownService
from cds_service.web.auth import require_bearer

bp = Blueprint("reports", __name__)


class ReportsDisabled(UnknownService):
    """No reports.token is configured: the endpoint does not exist."""


@bp.get("/reports/feedback")
def feedback_report() -> Response:
    rt = current_app.extensions["cds"]
    token = rt.settings.reports_token
    if not token:
        raise ReportsDisabled("The report endpoint is off: set reports.token to enable it.")
    require_bearer(token)
    try:
        since, until = analytics.parse_range(request.args.get("since"), request.args.get("until"))
    except ValueError:
        raise InvalidHookRequest("since and until must be ISO dates (2025-03-04) or date-times.") from None
    try:
        stats = analytics.rule_report(rt.store.engine, since, until)
    except Exception as exc:  # the store is down: say so (503, Retry-After), do not leak it
        raise StoreUnavailable() from exc
    return jsonify({"since": request.args.get("since"), "until": request.args.get("until"),
                    "rules": analytics.as_dicts(stats), "override_rate": analytics.OVERRIDE_RATE})
