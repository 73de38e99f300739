"""The web console in process (Flask test client): same answers as the API, access, CSRF, what-if, redaction.

The browser tests are tests/e2e/test_console.py; these cover the edges quickly.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.console import evaluate
from tests.conftest import DEFAULT_CONFIG

API_HEADERS = {"Content-Type": "application/json"}


def csrf(client: FlaskClient, path: str = "/console") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def raw_json(page: str) -> Any:
    match = re.search(r'id="raw-json">(.*?)</pre>', page, re.S)
    assert match, page[:2000]
    return json.loads(html.unescape(match.group(1)))


@pytest.fixture
def console_app(make_config: Callable[..., Path]) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**console: Any) -> Flask:
        application = create_app(str(make_config(console={"enabled": True, "token": "", **console})))
        apps.append(application)
        return application

    yield make
    for application in apps:
        application.extensions["cds"].store.dispose()


def test_every_example_answers_as_the_api_does(client: FlaskClient) -> None:
    token = csrf(client)
    for item in evaluate.examples():
        page = client.post("/console", data={"csrf_token": token, "example": item.id}).get_data(as_text=True)
        shown = raw_json(page)
        body = item.request_for("org.injection-billing.encounter-close")
        api = client.post(f"/cds-services/{item.service}", json=body)
        assert api.status_code == 200
        assert shown == api.get_json(), item.id
        assert page.count('<article class="card ') == len(shown["cards"])


def test_console_evaluations_are_not_stored(app: Flask, client: FlaskClient) -> None:
    token = csrf(client)
    client.post("/console", data={"csrf_token": token, "example": "01-happy-im-medicare"})
    assert app.extensions["cds"].store.flush()
    with app.extensions["cds"].store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM cards_issued").scalar() == 0


def test_errors_show_the_operation_outcome(client: FlaskClient) -> None:
    token = csrf(client)
    page = client.post("/console", data={"csrf_token": token, "request_json": "[" * 500 + "]" * 500})
    assert "The JSON body is nested too deeply." in page.get_data(as_text=True)
    page = client.post("/console", data={"csrf_token": token, "request_json": '{"hook": "nothing"}'})
    assert "No service answers this request&#39;s hook" in page.get_data(as_text=True)
    page = client.post("/console", data={"csrf_token": token})
    assert "Pick an example" in page.get_data(as_text=True)


def test_keyed_cards_tells_every_card_apart(app: Flask) -> None:
    rt = app.extensions["cds"]
    for item in evaluate.examples():
        result = evaluate.evaluate_example(rt, item)
        keyed = evaluate.keyed_cards(result, item.request["hookInstance"])
        assert len(keyed) == len(result.cards) and all(subject for _, subject, _ in keyed), item.id


def test_post_without_the_csrf_token_is_refused(client: FlaskClient) -> None:
    csrf(client)
    response = client.post("/console", data={"example": "01-happy-im-medicare"})
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"
    response = client.post("/console/config", data={"csrf_token": "forged", "config_yaml": "{}"})
    assert response.status_code == 400


def test_token_login_and_session(console_app: Callable[..., Flask]) -> None:
    application = console_app(token="s3cret-token")
    client = application.test_client()
    first = client.get("/console/config")
    assert first.status_code == 303 and first.headers["Location"].endswith("/console/login")
    bearer = client.get("/console", headers={"Authorization": "Bearer s3cret-token"})
    assert bearer.status_code == 303  # the JWT/bearer header is no way in
    token = csrf(client, "/console/login")
    wrong = client.post("/console/login", data={"csrf_token": token, "token": "s3cret-tokeN"}, follow_redirects=True)
    assert "not the console token" in wrong.get_data(as_text=True)
    right = client.post("/console/login", data={"csrf_token": token, "token": "s3cret-token"})
    assert right.status_code == 303
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert client.get("/console/config").status_code == 200
    # A new token (a configuration reload) ends every session: the cookie's key came from the old one.
    rt = application.extensions["cds"]
    application.extensions["cds"] = dataclasses.replace(
        rt, settings=dataclasses.replace(rt.settings, console_token="another-token"))
    assert client.get("/console/config").status_code == 303


def test_disabled_console_is_a_json_404(console_app: Callable[..., Flask]) -> None:
    client = console_app(enabled=False).test_client()
    for path in ("/console", "/console/config", "/console/static/console.js"):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json()["resourceType"] == "OperationOutcome"
    application = console_app()
    rt = application.extensions["cds"]
    application.extensions["cds"] = dataclasses.replace(  # turned off by a reload
        rt, settings=dataclasses.replace(rt.settings, console_enabled=False))
    assert application.test_client().get("/console").status_code == 404


def test_configuration_page_hides_secrets(console_app: Callable[..., Flask]) -> None:
    application = console_app(token="console-secret")
    rt = application.extensions["cds"]
    raw = {**rt.settings.raw, "reports": {"token": "reports-secret"},
           "store": {"url": "postgresql+psycopg://cds:db-password@127.0.0.1/cds"}}
    application.extensions["cds"] = dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, raw=raw))
    client = application.test_client()
    token = csrf(client, "/console/login")
    client.post("/console/login", data={"csrf_token": token, "token": "console-secret"})
    page = client.get("/console/config").get_data(as_text=True)
    assert "console-secret" not in page and "reports-secret" not in page and "db-password" not in page
    assert "admin-96372" in page and "Cyanocobalamin" in page and "medicare-part-b" in page


def test_what_if_never_reads_files_or_writes(app: Flask, tmp_path: Path) -> None:
    rt = app.extensions["cds"]
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["auth"] = {"required": True, "trusted_issuers": [{"iss": "https://x.example", "jwks_file": "/etc/passwd"}]}
    other, problems = evaluate.what_if_runtime(rt, yaml.safe_dump(data))
    assert problems == [] and other is not None and other.verifier is None
    assert evaluate.what_if_runtime(rt, "extends: default.yaml\n")[1] == [
        "extends: not supported here; paste the whole configuration"]
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    assert "too large" in evaluate.what_if_runtime(rt, laughs)[1][0]
    unchanged = evaluate.compare(rt, other)
    assert all(not d.changes and not d.status_changed for d in unchanged)


def test_feedback_page_reports_bad_dates(client: FlaskClient) -> None:
    page = client.get("/console/feedback?since=yesterday").get_data(as_text=True)
    assert "must be dates" in page and "<svg" in page


def test_units_and_labels_read_as_a_coder_writes_them(client: FlaskClient) -> None:
    """"x 1 unit" (not "1 units"), doses in mcg (not UCUM's ug), no empty Parameters column, and an answer
    without a service is not "Answer of (no service)"."""
    token = csrf(client)
    page = client.post("/console", data={"csrf_token": token, "example": "01-happy-im-medicare"}).get_data(
        as_text=True)
    units = re.findall(r'<span class="charge-units">([^<]+)</span> (units?)', page)
    assert ("1", "unit") in units and all(word == ("unit" if n == "1" else "units") for n, word in units)
    config = client.get("/console/config").get_data(as_text=True)
    assert "1,000 mcg" in config and not re.search(r"<td>[^<]*\bug\b[^<]*</td>", config)  # the tables; the
    # what-if editor holds the YAML as written
    assert "<th>Parameters</th>" not in config
    page = client.post("/console", data={"csrf_token": token, "request_json": '{"hook": "nothing"}'}).get_data(
        as_text=True)
    assert "(no service)" not in page and "Answer: HTTP" in page
