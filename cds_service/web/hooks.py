"""Discovery, service calls and feedback (CDS Hooks 2.0)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, jsonify

from cds_service import metrics, protocol
from cds_service.errors import UnknownService
from cds_service.runtime import Runtime
from cds_service.service import Call
from cds_service.web import logs
from cds_service.web.body import read_json, read_json_plain
from cds_service.web.current import current_flask_app, current_g, current_request

bp = Blueprint("hooks", __name__)
log = logging.getLogger("cds_service.requests")


def runtime(app: Flask | None = None) -> Runtime:
    """The runtime of `app`, by default the current one (a caller that has the app passes it)."""
    rt: Runtime = (app or current_flask_app()).extensions["cds"]
    return rt


def service_or_404(service_id: str, rt: Runtime | None = None) -> protocol.ServiceDef:
    service = (rt or runtime()).services.get(service_id)
    if service is None:
        raise UnknownService(f"No CDS service with id '{service_id}'.")
    return service


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify(protocol.discovery(runtime().services, runtime().settings.max_cards))


@bp.post("/cds-services/<service_id>")
def call(service_id: str) -> Response:
    app, ctx_g = current_flask_app(), current_g()
    rt = runtime(app)
    service = service_or_404(service_id, rt)
    depth = rt.settings.max_json_depth
    this = Call(service.id)
    try:
        outcome = rt.answer(this, lambda: read_json_plain(current_request(), depth), service)
        metrics.count_cards(outcome.response["cards"])
        return json_response(outcome.response, app)
    finally:
        ctx_g.hook_instance = this.hook_instance  # for the error handler's log line
        access_log(this)


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    rt = runtime()
    service = service_or_404(service_id)
    entries = protocol.parse_feedback(read_json(current_request(), rt.settings.max_json_depth))
    stored = rt.store.add_feedback(service.id, entries)  # StoreUnavailable (503) when the database is down
    return jsonify({"received": len(entries), "stored": stored})


def json_response(body: Any, app: Flask) -> Response:
    """jsonify at orjson's speed: what the app's JSON provider cannot write natively it writes as Flask does."""
    return app.response_class(json_bytes(body, app.json.default), mimetype="application/json")  # type: ignore[attr-defined]


def json_bytes(body: Any, default: Callable[[Any], Any]) -> bytes:
    """A service call's answer as JSON (here and in web.lane); `default` is the app's JSON provider's."""
    return orjson.dumps(body, default=default, option=orjson.OPT_NON_STR_KEYS)


def access_log(call: Call) -> None:
    """One JSON line per service call: no token, no JWT, no patient data."""
    record: dict[str, Any] = {
        "event": "hook",
        "service": call.service_id,
        "hookInstance": call.hook_instance,
        "status": call.status,
        "duration_ms": call.duration_ms(),
        "rules": call.rules_fired,
    }
    logs.info(log, record)
