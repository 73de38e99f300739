"""The console login's lockout (issue 19): too many wrong tokens from one address are answered 429 for a while, each
failure is logged with the address and never the token, and a right token clears the count."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.console.lockout import client_key
from tests.protocol.test_console import csrf

TOKEN = "console-s3cret-4711"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(record.getMessage())
        self.events.append(json.loads(record.getMessage()))


@pytest.fixture
def logged() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("cds_service.console")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def locked_app(make_config: Callable[..., Path]) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(server: dict[str, Any] | None = None, **console: Any) -> Flask:
        application = create_app(str(make_config(console={"enabled": True, "token": TOKEN, **console},
                                                 server=server or {})))
        apps.append(application)
        return application

    yield make
    for application in apps:
        application.extensions["cds"].store.dispose()


def attempt(client: FlaskClient, token: str, address: str = "198.51.100.7", **headers: str) -> Any:
    form = csrf(client, "/console/login")
    return client.post("/console/login", data={"csrf_token": form, "token": token},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


def test_a_hundred_wrong_tokens_are_429_after_the_tenth(locked_app: Callable[..., Flask], logged: Collect) -> None:
    client = locked_app().test_client()
    statuses = [attempt(client, f"guess-{n}").status_code for n in range(100)]
    assert statuses == [303] * 10 + [429] * 90
    locked = attempt(client, TOKEN)  # the right token too, while the address is locked
    assert locked.status_code == 429
    assert 890 <= int(locked.headers["Retry-After"]) <= 900
    assert "Too many wrong tokens from your address: try again in 15 minutes." in locked.get_data(as_text=True)
    assert client.get("/console/config").status_code == 303  # not logged in
    failed = [e for e in logged.events if e["event"] == "console_login_failed"]
    assert [(e["address"], e["failures"], e["limit"]) for e in failed] == [("198.51.100.7", n, 10)
                                                                            for n in range(1, 11)]
    assert [e["event"] for e in logged.events].count("console_login_locked") == 1  # once per lock, not per try
    assert not any("guess-" in line or TOKEN in line for line in logged.text)
    other = attempt(client, TOKEN, address="198.51.100.8")  # another address is not locked out
    assert other.status_code == 303 and other.headers["Location"].endswith("/console/")


def test_the_right_token_clears_the_count(locked_app: Callable[..., Flask]) -> None:
    application = locked_app()
    for _ in range(9):
        assert attempt(application.test_client(), "wrong").status_code == 303
    assert attempt(application.test_client(), TOKEN).headers["Location"].endswith("/console/")
    client = application.test_client()
    assert [attempt(client, "wrong").status_code for _ in range(10)] == [303] * 10
    assert attempt(client, "wrong").status_code == 429


def test_the_lock_ends_with_its_window(locked_app: Callable[..., Flask]) -> None:
    client = locked_app(login_failures=3, lockout_seconds=1).test_client()
    assert [attempt(client, "wrong").status_code for _ in range(4)] == [303, 303, 303, 429]
    time.sleep(1.1)
    assert attempt(client, TOKEN).status_code == 303


def test_two_workers_count_the_same_failures(locked_app: Callable[..., Flask]) -> None:
    """Two apps on one store stand for two workers (or instances): the failures are rows in the store."""
    first = locked_app(login_failures=4)
    second = create_app(first.extensions["cds"].settings.source)
    try:
        assert [attempt(app.test_client(), "wrong").status_code for app in (first, second, first, second)] == [303] * 4
        assert attempt(second.test_client(), TOKEN).status_code == 429
        assert attempt(first.test_client(), TOKEN).status_code == 429
    finally:
        second.extensions["cds"].store.dispose()


def test_behind_a_trusted_proxy_the_forwarded_address_counts(locked_app: Callable[..., Flask],
                                                            logged: Collect) -> None:
    application = locked_app({"trusted_proxies": 1}, login_failures=2)
    for _ in range(2):
        attempt(application.test_client(), "wrong", address="10.0.0.2",
                **{"X-Forwarded-For": "203.0.113.9, 192.0.2.1"})  # the proxy appended 192.0.2.1
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    assert attempt(application.test_client(), TOKEN, address="10.0.0.2", **forwarded).status_code == 303
    forwarded = {"X-Forwarded-For": "192.0.2.1"}
    assert attempt(application.test_client(), "wrong", address="10.0.0.2", **forwarded).status_code == 429
    assert {e["address"] for e in logged.events if e["event"] == "console_login_failed"} == {"192.0.2.1"}


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(locked_app: Callable[..., Flask]) -> None:
    client = locked_app(login_failures=2).test_client()
    for n in range(2):
        attempt(client, "wrong", **{"X-Forwarded-For": f"203.0.113.{n}"})  # a client cannot pick its address
    assert attempt(client, TOKEN, **{"X-Forwarded-For": "203.0.113.99"}).status_code == 429


@pytest.mark.parametrize(("address", "key"), [
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    (None, "unknown"),
])
def test_failures_count_by_ipv4_address_or_ipv6_network(address: str | None, key: str) -> None:
    assert client_key(address) == key


def test_the_locked_page_says_when_to_come_back(locked_app: Callable[..., Flask]) -> None:
    client = locked_app(login_failures=1, lockout_seconds=90).test_client()
    attempt(client, "wrong")
    page = attempt(client, "wrong").get_data(as_text=True)
    assert re.search(r"try again in 2 minutes\.", page)
