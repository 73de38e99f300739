"""The hook call's lane (web/lane.py) answers exactly as the app does: the same status line, headers and body,
for cards and for every error; and whatever it does not take, the app answers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from werkzeug.test import EnvironBuilder, run_wsgi_app

from cds_service import create_app
from cds_service.web.lane import HookLane
from tests.conftest import FIXTURES

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
ORDER_SIGN = "/cds-services/injection-billing-order-sign"
SCENARIOS = sorted(FIXTURES.glob("[0-9][0-9]-*.json"))
KEY = ec.generate_private_key(ec.SECP384R1())
ISS = "https://ehr.example.org"


def answer(wsgi: Any, path: str, body: bytes, **more: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    environ = EnvironBuilder(path=path, method="POST", data=body, **{"content_type": "application/json", **more})
    app_iter, status, headers = run_wsgi_app(wsgi, environ.get_environ())
    try:
        data = b"".join(app_iter)
    finally:
        getattr(app_iter, "close", lambda: None)()
    return status, sorted(headers.items()), data


def both(app: Flask, path: str, body: bytes, *, taken: bool = True, **more: Any) -> tuple[Any, Any]:
    """The lane's answer and the app's own; taken: the lane must answer without the app."""
    lane = app.wsgi_app
    assert isinstance(lane, HookLane)
    inner = lane.app

    def not_here(environ: Any, start_response: Any) -> Any:
        raise AssertionError(f"{path} went to the app")

    lane.app = not_here if taken else inner
    try:
        by_lane = answer(lane, path, body, **more)
    finally:
        lane.app = inner
    return by_lane, answer(inner, path, body, **more)


@pytest.fixture
def app(make_config: Callable[..., Path]) -> Iterator[Flask]:
    application = create_app(str(make_config()))
    yield application
    application.extensions["cds"].store.dispose()


def request_of(path: Path) -> tuple[str, bytes]:
    scenario = json.loads(path.read_text())
    request = json.dumps(scenario["request"]).replace("__CLOSE_HOOK__", "org.injection-billing.encounter-close")
    return f"/cds-services/{scenario['service']}", request.encode()


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_cards_are_the_apps_byte_for_byte(app: Flask, path: Path) -> None:
    url, body = request_of(path)
    (status, headers, data), expected = both(app, url, body)
    assert (status, headers, data) == expected
    assert status == "200 OK" and json.loads(data)["cards"]
    assert ("Cache-Control", "no-store") in headers and ("X-Content-Type-Options", "nosniff") in headers


def broken(body: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    """Calls the lane takes and refuses: their OperationOutcomes must be the app's."""
    yield "not JSON", b'{"hook": '
    yield "too deep", b"[" * 150 + b"]" * 150
    yield "not an object", b"[]"
    yield "another hook", json.dumps({**body, "hook": "patient-view"}).encode()
    yield "a hook not ASCII", json.dumps({**body, "hook": "r\u00e9sum\u00e9"}).encode()  # jsonify escapes it
    yield "no context", json.dumps({k: v for k, v in body.items() if k != "context"}).encode()
    unreachable = {**body, "prefetch": {}, "fhirServer": "https://not-allowed.example.org/fhir"}
    yield "412", json.dumps(unreachable).encode()


def test_refusals_are_the_apps(app: Flask) -> None:
    url, raw = request_of(SCENARIOS[0])
    for why, body in broken(json.loads(raw)):
        lane, flask_path = both(app, url, body)
        assert lane == flask_path, why
        assert lane[0].split()[0] in ("400", "412"), why


def test_what_the_lane_does_not_take_the_app_answers(app: Flask) -> None:
    url, body = request_of(SCENARIOS[0])
    cases = {
        "unknown service": (DISCHARGE + "x", body, {}),
        "trailing slash": (url + "/", body, {}),
        "not JSON by type": (url, body, {"content_type": "text/plain"}),
        "a browser's call": (url, body, {"headers": {"Origin": "https://sandbox.cds-hooks.org"}}),
        "feedback": (url + "/feedback", b'{"feedback": []}', {}),
    }
    for why, (path, data, more) in cases.items():
        lane, flask_path = both(app, path, data, taken=False, **more)
        assert lane == flask_path, why
    origin = both(app, url, body, taken=False, headers={"Origin": "https://sandbox.cds-hooks.org"})[0]
    assert ("Access-Control-Allow-Origin", "https://sandbox.cds-hooks.org") in origin[1]  # flask_cors answered


def signed(aud: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISS, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(payload, KEY, algorithm="ES384", headers={"typ": "JWT", "kid": "k1"})


def test_with_auth_a_good_token_takes_the_lane_and_a_bad_one_is_the_apps_401(make_config: Callable[..., Path]) -> None:
    app = jwk_app(make_config)
    try:
        url, body = request_of(SCENARIOS[0])
        good, expected = both(app, url, body, headers={"Authorization": f"Bearer {signed('http://localhost' + url)}"})
        assert good[0] == "200 OK" and json.loads(good[2])["cards"]
        assert expected[0] == "401 UNAUTHORIZED"  # the same token again: a replay, refused by the app
        replayed = signed("http://localhost" + url)
        assert answer(app.wsgi_app, url, body, headers={"Authorization": f"Bearer {replayed}"})[0] == "200 OK"
        for token in (replayed, signed("http://localhost/cds-services"), "not-a-jwt"):
            lane, flask_path = both(app, url, body, taken=False, headers={"Authorization": f"Bearer {token}"})
            assert lane[0] == flask_path[0] == "401 UNAUTHORIZED" and lane[2] == flask_path[2]
    finally:
        app.extensions["cds"].store.dispose()


def test_a_body_cut_short_is_the_apps_400(app: Flask) -> None:
    url, body = request_of(SCENARIOS[0])
    lane, flask_path = both(app, url, body, environ_overrides={"CONTENT_LENGTH": str(len(body) + 10)})
    assert lane == flask_path and lane[0] == "400 BAD REQUEST"


def jwk_app(make_config: Callable[..., Path], **more: Any) -> Flask:
    jwk = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(KEY.public_key()))
    jwk.update(kid="k1", use="sig", alg="ES384")
    issuer = {"iss": ISS, "jwks": {"keys": [jwk]}}
    return create_app(str(make_config(auth={"required": True, "trusted_issuers": [issuer]}, **more)))


def test_behind_a_proxy_the_aud_is_the_url_the_client_called(make_config: Callable[..., Path]) -> None:
    """With server.trusted_proxies, X-Forwarded-Proto makes the URL called https: the lane sits behind ProxyFix."""
    app = jwk_app(make_config, server={"trusted_proxies": 1})
    try:
        url, body = request_of(SCENARIOS[0])
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        https, http = signed("https://localhost" + url), signed("http://localhost" + url)
        assert answer(app.wsgi_app, url, body, headers={**forwarded, "Authorization": f"Bearer {https}"})[0] == "200 OK"
        inner = answer(app.wsgi_app, url, body, headers={**forwarded, "Authorization": f"Bearer {http}"})
        assert inner[0] == "401 UNAUTHORIZED"
    finally:
        app.extensions["cds"].store.dispose()


def test_a_refused_token_is_checked_once_and_an_absurd_exp_is_a_401(make_config: Callable[..., Path]) -> None:
    app = jwk_app(make_config)
    try:
        verifier = app.extensions["cds"].verifier
        checks = []
        verify = verifier.verify

        def counted(token: str, audience: str) -> Any:
            checks.append(audience)
            return verify(token, audience)

        verifier.verify = counted
        url, body = request_of(SCENARIOS[0])
        for token in (signed("http://localhost/elsewhere"), signed("http://localhost" + url, exp=1e20)):
            checks.clear()
            status = answer(app.wsgi_app, url, body, headers={"Authorization": f"Bearer {token}"})[0]
            assert status == "401 UNAUTHORIZED" and len(checks) == 1
    finally:
        app.extensions["cds"].store.dispose()
