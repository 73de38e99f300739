"""Trusting CDS clients: one test per accepted algorithm and per way a token must be refused."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer

from cds_service import create_app
from tests.conftest import load_scenario

ISS = "https://ehr.example.org"
DISCOVERY = "http://localhost/cds-services"
DISCHARGE = "/cds-services/injection-billing-encounter-discharge"


def make_key(alg: str) -> Any:
    if alg.startswith("ES"):
        return ec.generate_private_key(ec.SECP384R1() if alg == "ES384" else ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private: Any, kid: str, alg: str | None) -> dict[str, Any]:
    algo = jwt.get_algorithm_by_name(alg or ("ES384" if isinstance(private, ec.EllipticCurvePrivateKey) else "RS384"))
    jwk: dict[str, Any] = json.loads(algo.to_jwk(private.public_key()))
    jwk["kid"] = kid
    jwk["use"] = "sig"
    if alg:
        jwk["alg"] = alg
    return jwk


KEYS = {alg: make_key(alg) for alg in ("ES384", "RS384", "ES256", "RS256")}
JWKS = {"keys": [public_jwk(key, f"kid-{alg}", alg) for alg, key in KEYS.items()]}


def token(
    alg: str = "ES384",
    *,
    key: Any = None,
    kid: str | None = None,
    aud: str = DISCOVERY,
    iss: str = ISS,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    head: dict[str, Any] = {"typ": "JWT", "kid": kid or f"kid-{alg}"}
    head.update(headers or {})
    return jwt.encode(payload, key or KEYS[alg], algorithm=alg, headers=head)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def auth_config(make_config: Callable[..., Path]) -> Callable[..., Path]:
    def make(**auth: Any) -> Path:
        section = {"required": True, "trusted_issuers": [{"iss": ISS, "jwks": JWKS}], "clock_skew_seconds": 5}
        section.update(auth)
        return make_config(auth=section)
    return make


@pytest.fixture
def secured(auth_config: Callable[..., Path]) -> Iterator[Flask]:
    app = create_app(str(auth_config()))
    yield app
    app.extensions["cds"].store.dispose()


@pytest.fixture
def client(secured: Flask) -> FlaskClient:
    return secured.test_client()


def refused(response: Any) -> None:
    assert response.status_code == 401
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == "Unauthorized."  # no detail


@pytest.mark.parametrize("alg", ["ES384", "RS384", "ES256", "RS256"])
def test_accepted_algorithms(client: FlaskClient, alg: str) -> None:
    assert client.get("/cds-services", headers=bearer(token(alg))).status_code == 200


def test_service_call_and_feedback_need_the_token_for_their_own_url(client: FlaskClient) -> None:
    request = load_scenario("01")["request"]
    url = "http://localhost" + DISCHARGE
    refused(client.post(DISCHARGE, json=request))
    refused(client.post(DISCHARGE, json=request, headers=bearer(token(aud=DISCOVERY))))
    assert client.post(DISCHARGE, json=request, headers=bearer(token(aud=url))).status_code == 200
    feedback = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2025-03-04T15:00:00Z"}]}
    refused(client.post(DISCHARGE + "/feedback", json=feedback))
    ok = client.post(DISCHARGE + "/feedback", json=feedback, headers=bearer(token(aud=url + "/feedback")))
    assert ok.status_code == 200


def test_no_token_and_not_bearer(client: FlaskClient) -> None:
    refused(client.get("/cds-services"))
    refused(client.get("/cds-services", headers={"Authorization": f"Basic {token()}"}))
    refused(client.get("/cds-services", headers=bearer("not.a.jwt")))


def test_alg_none_is_refused(client: FlaskClient) -> None:
    now = int(time.time())
    unsigned = jwt.encode({"iss": ISS, "aud": DISCOVERY, "exp": now + 60, "iat": now, "jti": "n1"}, None,
                          algorithm="none", headers={"kid": "kid-ES384", "typ": "JWT"})
    refused(client.get("/cds-services", headers=bearer(unsigned)))


def test_hs256_signed_with_the_public_key_is_refused(client: FlaskClient) -> None:
    import base64
    import hashlib
    import hmac

    pem = KEYS["RS384"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "kid-RS384"}).encode())
    body = b64(json.dumps({"iss": ISS, "aud": DISCOVERY, "exp": now + 60, "iat": now, "jti": "h1"}).encode())
    sig = b64(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    refused(client.get("/cds-services", headers=bearer(f"{head}.{body}.{sig}")))


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: token(iss="https://unknown.example.org"), id="unknown-iss"),
        pytest.param(lambda: token(kid="no-such-kid"), id="unknown-kid"),
        pytest.param(lambda: token(aud="https://elsewhere.example.org/cds-services"), id="wrong-aud"),
        pytest.param(lambda: token(exp=int(time.time()) - 60), id="expired"),
        pytest.param(lambda: token(iat=int(time.time()) + 3600, exp=int(time.time()) + 3900), id="iat-hour-ahead"),
        pytest.param(lambda: token(key=make_key("ES384")), id="bad-signature"),
        pytest.param(lambda: token(jti=None), id="no-jti"),
        pytest.param(lambda: token(iat=None), id="no-iat"),
        pytest.param(lambda: token(exp=None), id="no-exp"),
        pytest.param(lambda: token(headers={"typ": "at+jwt"}), id="typ-not-jwt"),
        pytest.param(lambda: token("RS384", kid="kid-ES384"), id="key-of-another-type"),
        pytest.param(lambda: token("ES256", kid="kid-ES384", key=KEYS["ES256"]), id="alg-not-the-keys"),
    ],
)
def test_refused_tokens(client: FlaskClient, bad: Callable[[], str]) -> None:
    refused(client.get("/cds-services", headers=bearer(bad())))


def test_token_without_kid_is_refused(client: FlaskClient) -> None:
    now = int(time.time())
    no_kid = jwt.encode({"iss": ISS, "aud": DISCOVERY, "exp": now + 60, "iat": now, "jti": "k1"}, KEYS["ES384"],
                        algorithm="ES384", headers={"typ": "JWT"})
    refused(client.get("/cds-services", headers=bearer(no_kid)))


def test_replayed_jti_is_refused(client: FlaskClient) -> None:
    once = token()
    assert client.get("/cds-services", headers=bearer(once)).status_code == 200
    refused(client.get("/cds-services", headers=bearer(once)))


def test_replay_is_refused_by_another_instance_sharing_the_store(auth_config: Callable[..., Path]) -> None:
    config = str(auth_config())
    first, second = create_app(config), create_app(config)
    try:
        once = token()
        assert first.test_client().get("/cds-services", headers=bearer(once)).status_code == 200
        refused(second.test_client().get("/cds-services", headers=bearer(once)))
    finally:
        first.extensions["cds"].store.dispose()
        second.extensions["cds"].store.dispose()


def test_clock_skew_allows_the_sandboxs_iat_half_a_second_ahead(client: FlaskClient) -> None:
    ahead = token(iat=int(time.time()) + 1)
    assert client.get("/cds-services", headers=bearer(ahead)).status_code == 200


def test_token_in_the_sandboxs_manner_is_accepted(client: FlaskClient, httpserver: HTTPServer) -> None:
    """ES384, a jku naming the sandbox's JWK Set URL (not allow-listed here: never fetched), iat 0.5 s ahead."""
    jku = httpserver.url_for("/.well-known/jwks.json")
    sandbox_like = token("ES384", iat=time.time() + 0.5, headers={"jku": jku})
    assert client.get("/cds-services", headers=bearer(sandbox_like)).status_code == 200
    assert httpserver.log == []


def test_jku_not_allow_listed_is_never_fetched(client: FlaskClient, httpserver: HTTPServer) -> None:
    attacker = make_key("ES384")
    httpserver.expect_request("/jwks.json").respond_with_json({"keys": [public_jwk(attacker, "evil", "ES384")]})
    forged = token("ES384", key=attacker, kid="evil", headers={"jku": httpserver.url_for("/jwks.json")})
    refused(client.get("/cds-services", headers=bearer(forged)))
    assert httpserver.log == []


def test_allow_listed_jku_is_fetched(auth_config: Callable[..., Path], httpserver: HTTPServer) -> None:
    rotated = make_key("ES384")
    httpserver.expect_request("/rotated.json").respond_with_json({"keys": [public_jwk(rotated, "new", "ES384")]})
    jku = httpserver.url_for("/rotated.json")  # http is honoured on loopback only
    app = create_app(str(auth_config(trusted_issuers=[{"iss": ISS, "jwks": JWKS, "jku_allowed": [jku]}])))
    try:
        good = token("ES384", key=rotated, kid="new", headers={"jku": jku})
        assert app.test_client().get("/cds-services", headers=bearer(good)).status_code == 200
        assert len(httpserver.log) == 1
    finally:
        app.extensions["cds"].store.dispose()


def test_jwks_url_is_cached_and_refreshed_once_for_an_unknown_kid(
    auth_config: Callable[..., Path], httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/jwks").respond_with_json(JWKS)
    app = create_app(str(auth_config(trusted_issuers=[{"iss": ISS, "jwks_url": httpserver.url_for("/jwks")}])))
    try:
        c = app.test_client()
        assert c.get("/cds-services", headers=bearer(token())).status_code == 200
        assert c.get("/cds-services", headers=bearer(token("RS256"))).status_code == 200
        assert len(httpserver.log) == 1  # cached
        refused(c.get("/cds-services", headers=bearer(token(kid="rotated-away"))))
        refused(c.get("/cds-services", headers=bearer(token(kid="rotated-again"))))
        assert len(httpserver.log) == 2  # one refresh for the unknown kid, then rate-limited
    finally:
        app.extensions["cds"].store.dispose()


def test_tenant_is_checked_when_configured(auth_config: Callable[..., Path]) -> None:
    app = create_app(str(auth_config(trusted_issuers=[{"iss": ISS, "jwks": JWKS, "tenant": "clinic-7"}])))
    try:
        c = app.test_client()
        refused(c.get("/cds-services", headers=bearer(token())))
        refused(c.get("/cds-services", headers=bearer(token(tenant="clinic-8"))))
        assert c.get("/cds-services", headers=bearer(token(tenant="clinic-7"))).status_code == 200
    finally:
        app.extensions["cds"].store.dispose()


def test_public_base_url_sets_the_audience(auth_config: Callable[..., Path]) -> None:
    app = create_app(str(auth_config(public_base_url="https://cds.example.org/billing")))
    try:
        c = app.test_client()
        refused(c.get("/cds-services", headers=bearer(token())))
        good = token(aud="https://cds.example.org/billing/cds-services")
        assert c.get("/cds-services", headers=bearer(good)).status_code == 200
    finally:
        app.extensions["cds"].store.dispose()


def test_preflight_and_health_need_no_token(client: FlaskClient) -> None:
    preflight = client.options(DISCHARGE, headers={
        "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert client.get("/healthz").status_code == 200


def test_sandbox_jwks_file_in_the_local_profile_loads() -> None:
    from cds_service.trust import KeySource

    keys = KeySource.parse(json.loads((Path(__file__).parents[2] / "config" / "sandbox-jwks.json").read_text()))
    assert set(keys) == {"44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"}


def test_jwks_is_fetched_only_over_https_or_loopback() -> None:
    from cds_service.trust import JwksUnavailable, fetch_jwks

    with pytest.raises(JwksUnavailable):
        fetch_jwks("http://keys.example.org/jwks.json")  # refused before any connection
