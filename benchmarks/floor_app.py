"""The floor: a bare Flask app that only parses the request body with orjson and returns a static card.

Served by benchmarks/run.py under gunicorn with the service's own options (2 workers, gthread, server.threads threads,
keep-alive 5 s; see cds_service/server.py), so that the ratio project/floor measures what the service adds
on top of Flask, gunicorn and reading the JSON body.

    .venv/bin/gunicorn --chdir benchmarks -w 2 -k gthread --threads 2 --keep-alive 5 -b 127.0.0.1:8090 floor_app:app
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request

CARD = {
    "uuid": "0f7c2f0e-6a51-4d83-9c8e-2b1b1a0e5d11",
    "summary": "Bill 96372 x1 for this intramuscular injection of Cyanocobalamin (vitamin B12)",
    "indicator": "info",
    "detail": "Cyanocobalamin (vitamin B12) 1,000 ug IM: bill **96372** x1 and **J3420** x1.",
    "source": {"label": "Injection billing", "topic": {"code": "admin-96372", "display": "Administration code"}},
    "selectionBehavior": "any",
    "suggestions": [{"label": "Add 96372 x1", "uuid": "5b0e8c1a-1d2f-4a57-8d7e-3c9f1e2a4b66", "isRecommended": True,
                     "actions": [{"type": "create", "description": "Capture the charge 96372 x1"}]}],
}
ANSWER = orjson.dumps({"cards": [CARD]})
DISCOVERY = orjson.dumps({"services": [{"hook": "encounter-discharge", "id": "injection-billing-encounter-discharge",
                                        "title": "Floor", "description": "Static answer"}]})

app = Flask(__name__)


@app.get("/cds-services")
def discovery() -> Response:
    return Response(DISCOVERY, mimetype="application/json")


@app.post("/cds-services/<service_id>")
def call(service_id: str) -> Response:
    orjson.loads(request.get_data(cache=False))
    return Response(ANSWER, mimetype="application/json")
