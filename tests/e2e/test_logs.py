"""The server's log: one JSON line per call, and never a token, a JWT or patient data."""

from __future__ import annotations

import copy
import json
import socket
import time

import requests

from tests.conftest import load_scenario
from tests.e2e.conftest import Server

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
SECRET_TOKEN = "fhir-token-must-not-be-logged-7f3a"
SECRET_JWT = "eyJhbGciOiJFUzM4NCJ9.eyJzZWNyZXQiOiJqd3QifQ.c2lnbmF0dXJlLW11c3Qtbm90LWJlLWxvZ2dlZA"


def test_one_json_line_per_call_without_secrets(server: Server, http: requests.Session) -> None:
    request = copy.deepcopy(load_scenario("01")["request"])
    request["hookInstance"] = "log-check-0001"
    request["fhirAuthorization"] = {"access_token": SECRET_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "user/*.read", "subject": "cds"}
    response = http.post(server.url(DISCHARGE), json=request, headers={"Authorization": f"Bearer {SECRET_JWT}"},
                         timeout=30)
    assert response.status_code == 200
    deadline = time.monotonic() + 5
    while "log-check-0001" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.stderr()
    (line,) = [json.loads(x) for x in log.splitlines() if "log-check-0001" in x]
    assert line["service"] == "injection-billing-encounter-discharge" and line["status"] == 200
    assert line["rules"] == ["admin-96372", "drug-waste-modifier"] and line["duration_ms"] > 0
    for secret in (SECRET_TOKEN, SECRET_JWT, "pt-4f2b4345", "D51.0", "Okafor"):
        assert secret not in log


def test_every_line_the_server_writes_is_json_and_a_malformed_header_is_not_quoted(server: Server) -> None:
    """gunicorn's own lines too (booting workers, its warnings): a header name that carries a token is refused
    400 and logged by kind and address only."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /cds-services HTTP/1.1\r\nHost: x\r\nBearer " + SECRET_TOKEN.encode()
                     + b"\x01: 1\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ")
    deadline = time.monotonic() + 5
    while "request_refused" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.strip()]
    assert all(isinstance(line, dict) and {"time", "level", "logger"} <= line.keys() for line in lines)
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line.get("message", "") for line in lines)
    (refused,) = [line for line in lines if line.get("event") == "request_refused"]
    assert refused["status"] == 400 and refused["address"] == "127.0.0.1"
    assert SECRET_TOKEN not in server.stderr()
