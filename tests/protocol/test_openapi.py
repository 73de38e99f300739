"""/openapi.json describes every endpoint the app serves, and GET / says where things are."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient


def test_every_route_and_method_is_described(app: Flask, client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    described = {(path, method.upper()) for path, operations in paths.items() for method in operations}
    services = sorted(app.extensions["cds"].services)
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue  # files
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if path == "/cds-services/{service_id}":
                served |= {(f"/cds-services/{service_id}", method) for service_id in services}
            else:
                served.add((path, method))
    assert served == described


def test_the_root_points_to_discovery_and_the_console(client: FlaskClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    index = answer.get_json()
    assert (index["discovery"], index["console"], index["openapi"], index["health"]) == (
        "/cds-services", "/console/", "/openapi.json", "/healthz")
    assert "/cds-services/injection-billing-order-sign" in index["services"]
    assert client.get(index["discovery"]).status_code == 200
    assert client.get(index["console"]).status_code in (200, 303)
