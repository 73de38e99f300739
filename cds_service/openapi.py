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
    meaning = {400: "Malformed JSON or a request that breaks this description", 401: "Missing or invalid JWT",
               404: "Unknown service", 405: "Wrong method", 412: "Data needed is neither prefetched nor obtainable",
               413: "Body over the configured limit", 415: "Body that is not JSON", 500: "Unexpected error",
               503: "The store does not answer"}
    return {str(s): {"description": meaning[s], "content": {"application/json": {"schema": OUTCOME}}}
            for s in statuses}


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
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"cdsHooksJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
