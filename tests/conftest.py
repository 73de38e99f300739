"""Shared fixtures: configuration files, apps, clients, and the public scenarios as fixtures."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SCENARIOS = FIXTURES  # copies of ../shared/scenarios, so the suite runs without shared/
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"
CLOSE_HOOK_PLACEHOLDER = "__CLOSE_HOOK__"
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of the real PostgreSQL whose search_path is a fresh schema, dropped after the test."""
    schema = f"test_{uuid.uuid4().hex}"
    admin = sa.create_engine(PG_BASE)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store on SQLite and on the real PostgreSQL (a fresh schema: tests/conftest.py pg_url)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store/cds.db"
    url: str = request.getfixturevalue("pg_url")
    return url


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """Write default.yaml with overrides (and a temporary SQLite store) to a file; return its path."""
    counter = iter(range(1000))

    def make(overrides: dict[str, Any] | None = None, **sections: Any) -> Path:
        base = yaml.safe_load(DEFAULT_CONFIG.read_text())
        base["store"]["url"] = f"sqlite:///{tmp_path}/cds.db"
        data = deep_merge(base, {**(overrides or {}), **sections})
        path = tmp_path / f"config-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


@pytest.fixture
def make_client(make_config: Callable[..., Path]) -> Iterator[Callable[..., FlaskClient]]:
    """make_client(**config_sections) -> a Flask test client of a fresh app; stores disposed afterwards."""
    apps: list[Flask] = []

    def make(**sections: Any) -> FlaskClient:
        app = create_app(str(make_config(**sections)))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["cds"].store.dispose()


@pytest.fixture
def app(make_config: Callable[..., Path]) -> Iterator[Flask]:
    application = create_app(str(make_config()))
    yield application
    application.extensions["cds"].store.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def load_scenario(name: str) -> dict[str, Any]:
    """A public scenario by file-name prefix, e.g. '01'; the close-hook placeholder left as is."""
    path = next(SCENARIOS.glob(f"{name}*.json"))
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture
def scenario() -> Callable[[str], dict[str, Any]]:
    return load_scenario


def topics(response_json: dict[str, Any]) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response_json["cards"]]


def suggested_charges(response_json: dict[str, Any]) -> list[tuple[str, float, tuple[str, ...]]]:
    """(code, units, modifiers) of every ChargeItem suggested in any card."""
    out = []
    for card in response_json["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                resource = action.get("resource") or {}
                if resource.get("resourceType") == "ChargeItem":
                    mods = tuple(e["valueCoding"]["code"] for e in resource.get("extension", [])
                                 if e["url"].endswith("/procedure-modifier"))
                    out.append((resource["code"]["coding"][0]["code"], resource["quantity"]["value"], mods))
    return out
