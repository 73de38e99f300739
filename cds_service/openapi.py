"""The OpenAPI 3.1 description of the HTTP interface, built from the same JSON Schemas the service checks."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from cds_service.protocol import SCHEMAS, ServiceDef

OUTCOME = {"$ref": "#/components/schemas/OperationOutcome"}


def hoist(schema: dict[str, Any], prefix: str, into: dict[str, Any]) -> dict[str, Any]:
    """Move a schema's $defs into components, rewriting its local references to match."""
    schema = copy.deepcopy(schema)
    defs = schema.pop("$defs", {})
    schema.pop("$schema", None)
    schema.pop("$id", None)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (v.replace("#/$defs/", f"#/components/schemas/{prefix}") if k == "$ref" and isinstance(v, str)
                        else rewrite(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name, definition in defs.items():
        into[prefix + name] = rewrite(definition)
    rewritten: dict[str, Any] = rewrite(schema)
    return rewritten


def error_responses(*statuses: int) -> dict[str, Any]:
    meaning = {400: "Malformed JSON or a request that breaks this description",
               401: "Missing or invalid JWT (or token)",
               404: "Unknown service, or a page or report that is off", 405: "Wrong method",
               412: "Data needed is neither prefetched nor obtainable", 429: "Too many wrong tokens",
               413: "Body over the configured limit", 415: "Body that is not JSON", 500: "Unexpected error",
               503: "The store does not answer"}
    return {str(s): {"description": meaning[s], "content": {"application/json": {"schema": OUTCOME}}}
            for s in statuses}


CONSOLE_PAGES = (
    ("/console/", "get", "The console: try a request (the examples, or one pasted)"),
    ("/console/", "post", "Evaluate the request pasted (form: request, service, csrf_token)"),
    ("/console/login", "get", "The console's login form"),
    ("/console/login", "post", "Log in with console.token (form: token, csrf_token); 429 with Retry-After after "
                               "console.login_failures wrong tokens from one address"),
    ("/console/logout", "post", "Log out"),
    ("/console/config", "get", "The configuration in force"),
    ("/console/config", "post", "What-if: evaluate the examples under an edited configuration (form)"),
    ("/console/catalog", "get", "Look a drug up by NDC, name or code, quarter by quarter (query: q)"),
    ("/console/feedback", "get", "Feedback per rule and the override rate (query: since, until, days included)"),
    ("/console/examples/{example_id}", "get", "An example request as JSON"),
)


def console_paths() -> dict[str, Any]:
    """The console's pages: HTML for a person in a browser (console.enabled), behind console.token."""
    paths: dict[str, Any] = {}
    for path, method, summary in CONSOLE_PAGES:
        operation: dict[str, Any] = {
            "summary": summary, "tags": ["console"], "security": [{"consoleSession": []}],
            "operationId": "console" + "".join(part.title() for part in re_words(path)) + method.title(),
            "responses": {
                "200": {"description": "A page", "content": {"text/html": {"schema": {"type": "string"}}}},
                "303": {"description": "To the login form when not logged in, or after a form"},
                "400": {"description": "A form without its CSRF token"},
                "404": {"description": "The console is off (console.enabled), or no such example"},
                "429": {"description": "Locked out after too many wrong tokens (Retry-After)"},
            },
        }
        if "{example_id}" in path:
            operation["parameters"] = [{"name": "example_id", "in": "path", "required": True,
                                        "schema": {"type": "string"}}]
        paths.setdefault(path, {})[method] = operation
    return paths


def re_words(path: str) -> list[str]:
    return [word for word in path.replace("{", "").replace("}", "").replace("_", "/").split("/") if word]


def call_schema(service: ServiceDef) -> dict[str, Any]:
    """What one service accepts: the CDS Hooks request, with its own hook, the context of its kind, and
    fhirAuthorization only beside fhirServer (protocol.parse_hook_request checks the same)."""
    context = "context-order-sign" if service.kind == "order-sign" else "context-encounter"
    return {
        "allOf": [{"$ref": "#/components/schemas/HookRequest"}],
        "properties": {"hook": {"const": service.hook},
                       "context": {"$ref": f"#/components/schemas/HookRequest_{context}"}},
        "if": {"required": ["fhirAuthorization"], "properties": {"fhirAuthorization": {"type": "object"}}},
        "then": {"required": ["fhirServer"]},
    }


@cache
def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    with open(SCHEMAS / "request.schema.json", encoding="utf-8") as fh:
        request = json.load(fh)
    with open(SCHEMAS / "feedback.schema.json", encoding="utf-8") as fh:
        feedback = json.load(fh)
    return request, feedback


def document(services: dict[str, ServiceDef]) -> dict[str, Any]:
    """The OpenAPI document; service ids are an enum so that generated calls reach real services."""
    request, feedback = _schemas()
    components: dict[str, Any] = {}
    components["HookRequest"] = hoist(request, "HookRequest_", components)
    components["Feedback"] = hoist(feedback, "Feedback_", components)
    components["OperationOutcome"] = {
        "type": "object", "required": ["resourceType", "issue"],
        "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}},
    }
    components["CardsResponse"] = {
        "type": "object", "required": ["cards"],
        "properties": {"cards": {"type": "array", "items": {
            "type": "object", "required": ["uuid", "summary", "indicator", "source"],
            "properties": {"uuid": {"type": "string"}, "summary": {"type": "string", "maxLength": 139},
                           "indicator": {"enum": ["info", "warning", "critical"]}, "source": {"type": "object"}},
        }}},
    }
    service_id = {"name": "service_id", "in": "path", "required": True,
                  "schema": {"type": "string", "enum": sorted(services)}}
    bearer = [{"cdsHooksJwt": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Injection billing CDS service", "version": "1.0.0",
                 "description": "CDS Hooks 2.0 services that say how to bill an SC/IM injection (CPT 96372) "
                                "and what the chart is missing before a payer denies the claim."},
        "paths": {
            "/cds-services": {"get": {
                "summary": "Discovery", "operationId": "discovery", "security": bearer,
                "responses": {"200": {"description": "The services", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["services"]}}}}, **error_responses(401)},
            }},
            **{f"/cds-services/{service.id}": {"post": {
                "summary": f"Call {service.id} ({service.hook})", "operationId": f"call-{service.id}",
                "security": bearer,
                "requestBody": {"required": True, "content": {"application/json": {"schema": call_schema(service)}}},
                "responses": {"200": {"description": "Cards", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CardsResponse"}}}},
                    **error_responses(400, 401, 412, 413, 415, 500)},
            }} for service in services.values()},
            "/cds-services/{service_id}/feedback": {"post": {
                "summary": "Feedback on cards", "operationId": "feedback", "security": bearer,
                "parameters": [service_id],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Feedback"}}}},
                "responses": {"200": {"description": "Stored", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["received", "stored"],
                    "properties": {"received": {"type": "integer"}, "stored": {"type": "integer"}}}}}},
                    **error_responses(400, 401, 404, 413, 415, 500, 503)},
            }},
            "/healthz": {"get": {
                "summary": "Readiness, including the store", "operationId": "healthz", "security": [],
                "responses": {"200": {"description": "Ready", "content": {"application/json": {
                    "schema": {"type": "object"}}}}, **error_responses(503)},
            }},
            "/": {"get": {
                "summary": "Where things are: discovery, the console, this description", "operationId": "index",
                "security": [], "responses": {"200": {"description": "Links", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["discovery", "openapi"]}}}}},
            }},
            "/openapi.json": {"get": {
                "summary": "This description", "operationId": "openapi", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                    "schema": {"type": "object"}}}}},
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics, summed over the instance's workers", "operationId": "metrics",
                "description": "Needs `Authorization: Bearer <metrics.token>` when metrics.token is set.",
                "security": [{}, {"tokenBearer": []}],
                "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {
                    "schema": {"type": "string"}}}}, **error_responses(401)},
            }},
            "/reports/feedback": {"get": {
                "summary": "Cards shown, accepted and overridden per rule, and the override rate",
                "operationId": "feedbackReport", "security": [{"tokenBearer": []}],
                "description": "Override rate = overridden / (accepted + overridden). A day as `until` is included "
                               "whole; a date-time is the first instant left out. 404 when reports.token is not "
                               "set.",
                "parameters": [{"name": name, "in": "query", "required": False, "schema": {"type": "string"},
                                "description": what} for name, what in (
                    ("since", "first day (UTC) or date-time, e.g. 2025-03-01"),
                    ("until", "last day (UTC), inclusive, or the first date-time left out"))],
                "responses": {"200": {"description": "The report", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["rules", "override_rate"]}}}},
                    **error_responses(400, 401, 404, 503)},
            }},
            **console_paths(),
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"cdsHooksJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                                "tokenBearer": {"type": "http", "scheme": "bearer",
                                                "description": "metrics.token or reports.token"},
                                "consoleSession": {"type": "apiKey", "in": "cookie", "name": "session"}},
        },
    }
