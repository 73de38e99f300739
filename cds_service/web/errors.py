"""Every error leaves as JSON: a FHIR OperationOutcome with the right status, never HTML or a traceback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from cds_service.errors import CDSError, StoreUnavailable

log = logging.getLogger("cds_service")

HTTP_ISSUE_CODES = {400: "invalid", 403: "forbidden", 404: "not-found", 405: "not-supported", 408: "timeout",
                    413: "too-costly", 414: "too-costly", 415: "not-supported", 417: "not-supported", 431: "too-costly",
                    500: "exception", 501: "not-supported", 503: "transient"}
GENERIC_500 = "The service could not answer this request."
TOO_LARGE = "The request body is larger than this service accepts."
# Requests the serving layer (cds_service.worker) refuses before the app sees them.
REFUSED_BY_SERVER = {
    400: "The request is not valid HTTP/1.1.",
    403: "The request is refused.",
    408: "The request did not arrive whole within the time this service allows (server.request_read_seconds).",
    413: TOO_LARGE,
    414: "The request's target is longer than this service accepts.",
    431: "The request's header fields are larger than this service accepts.",
    500: GENERIC_500,
    417: "Only the expectation 100-continue is supported.",
    501: "The request's transfer coding is not supported.",
    503: "The service is busy reading other requests: try again shortly.",
}


def outcome_body(status: int, code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error" if status < 500 else "fatal", "code": code, "diagnostics": text}],
    }


def operation_outcome(status: int, code: str, text: str) -> Response:
    response = jsonify(outcome_body(status, code, text))
    response.status_code = status
    return response


def error_headers(exc: CDSError) -> list[tuple[str, str]]:
    """The headers a CDSError's answer carries beside its OperationOutcome (here and in web.lane)."""
    headers = []
    if isinstance(exc, StoreUnavailable):
        headers.append(("Retry-After", str(exc.retry_after_seconds)))
    if exc.status == 413:
        headers.append(("Connection", "close"))  # the unread rest of the body must not become a request
    return headers


def register(app: Flask) -> None:
    @app.errorhandler(CDSError)
    def cds_error(exc: CDSError) -> Response:
        response = operation_outcome(exc.status, exc.code, exc.message)
        for name, value in error_headers(exc):
            response.headers[name] = value
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        text = {
            404: "No such endpoint or service.",
            405: "Method not allowed on this endpoint.",
            413: TOO_LARGE,
        }.get(status, exc.name)
        response = operation_outcome(status, HTTP_ISSUE_CODES.get(status, "exception"), text)
        if status == 413:
            response.headers["Connection"] = "close"  # the unread rest of the body must not become a request
        if status == 405 and exc.response is None and hasattr(exc, "valid_methods") and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.error(
            "unexpected error",
            extra={"hook_instance": g.get("hook_instance"), "error_type": type(exc).__name__},
        )
        return operation_outcome(500, "exception", GENERIC_500)
