"""Discovery, service calls and feedback (CDS Hooks 2.0)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, jsonify

from cds_service import metrics, protocol
from cds_service.errors import CDSError, UnknownService
from cds_service.runtime import Runtime
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
    started = time.perf_counter()
    status, rules_fired, card_uuids, repairs = 500, [], [], ()
    hook_instance: str | None = None
    try:
        body, plain_text = read_json_plain(current_request(), rt.settings.max_json_depth)
        if isinstance(body, dict) and isinstance(body.get("hookInstance"), str):
            hook_instance = ctx_g.hook_instance = body["hookInstance"][:256]  # g: for the error handler's log
        hook_request = protocol.parse_hook_request(body, service, rt.settings.max_cards, plain_text=plain_text)
        outcome = rt.answer(hook_request, service)
        status, rules_fired = 200, sorted({f.rule for f in outcome.findings})
        metrics.count_cards(outcome.response["cards"])
        card_uuids = [card["uuid"] for card in outcome.response.get("cards", []) if "uuid" in card]
        repairs = outcome.repairs
        return json_response(outcome.response, app)
    except CDSError as exc:
        status = exc.status
        raise
    finally:
        access_log(service.id, hook_instance, status, started, rules_fired)
        evaluation_log(rt, service.id, hook_instance, status, started, rules_fired, card_uuids, repairs=repairs)


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    rt = runtime()
    service = service_or_404(service_id)
    entries = protocol.parse_feedback(read_json(current_request(), rt.settings.max_json_depth))
    stored = rt.store.add_feedback(service.id, entries)  # StoreUnavailable (503) when the database is down
    return jsonify({"received": len(entries), "stored": stored})


def json_response(body: Any, app: Flask) -> Response:
    """jsonify at orjson's speed: what the app's JSON provider cannot write natively it writes as Flask does."""
    data = orjson.dumps(body, default=app.json.default, option=orjson.OPT_NON_STR_KEYS)  # type: ignore[attr-defined]
    return app.response_class(data, mimetype="application/json")


def evaluation_log(rt: Runtime, service_id: str, hook_instance: str | None, status: int, started: float,
                   rules_fired: list[str], card_uuids: list[str], *, repairs: tuple[str, ...] = (),
                   refusal: str | None = None) -> None:
    """Queue one row of the store's evaluation log; it is written behind the answer, which never waits on it.

    A database failure is logged by the store's writer (store_write_failed); this guard is for the queueing.
    """
    try:
        rt.store.record_evaluation(
            service_id, hook_instance, status, round((time.perf_counter() - started) * 1000, 1),
            rules_fired, card_uuids, repairs=repairs, refusal=refusal,
        )
    except Exception as exc:  # the answer stands whatever the log's database does
        cause = getattr(exc, "orig", None) or exc  # the driver's message, without the statement and its parameters
        log.error(json.dumps({
            "event": "evaluation_log_failed",
            "service": service_id,
            "hookInstance": hook_instance,
            "status": status,
            "error": type(exc).__name__,
            "detail": str(cause).splitlines()[0][:200] if str(cause) else "",
        }))


def access_log(service_id: str, hook_instance: str | None, status: int, started: float,
               rules_fired: list[str]) -> None:
    """One JSON line per service call: no token, no JWT, no patient data."""
    record: dict[str, Any] = {
        "event": "hook",
        "service": service_id,
        "hookInstance": hook_instance,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "rules": rules_fired,
    }
    logs.info(log, record)
