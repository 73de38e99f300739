"""Two `cds-service serve` processes sharing one PostgreSQL behave as one service."""

from __future__ import annotations

import copy
import json
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import sqlalchemy as sa

from tests.conftest import load_scenario
from tests.e2e.conftest import Server, new_session, run_cli
from tests.security.test_jwt import ISS, JWKS, token

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
PUBLIC = "https://cds.example.org"  # both instances sit behind one load balancer name


def two_servers(fresh_server: Callable[..., Server], pg_url: str) -> tuple[Server, Server]:
    overrides = {
        "store": {"url": pg_url},
        "auth": {"required": True, "public_base_url": PUBLIC,
                 "trusted_issuers": [{"iss": ISS, "jwks": JWKS}]},
    }
    first = fresh_server(overrides)  # one after the other: the first creates the schema
    return first, fresh_server(overrides)


def signed(path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(aud=PUBLIC + path)}"}


def issue_cards(server: Server, n: int) -> list[str]:
    uuids = []
    with new_session() as session:
        for i in range(n):
            request = copy.deepcopy(load_scenario("01")["request"])
            request["hookInstance"] = f"two-instances-{i}"
            response = session.post(server.url(DISCHARGE), json=request, headers=signed(DISCHARGE), timeout=30)
            assert response.status_code == 200, response.text
            uuids += [c["uuid"] for c in response.json()["cards"]]
    return uuids


def feedback_body(card: str, n: int) -> dict[str, Any]:
    outcome = "overridden" if n % 3 else "accepted"
    entry: dict[str, Any] = {"card": card, "outcome": outcome,
                             "outcomeTimestamp": f"2026-11-27T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"}
    if outcome == "accepted":
        entry["acceptedSuggestions"] = [{"id": "s-1"}]
    else:
        entry["overrideReason"] = {"reason": {"code": "already-billed", "display": "Already billed"}}
    return {"feedback": [entry]}


def post_feedback(servers: list[Server], card: str, n: int) -> bool:
    """POST one feedback entry, trying the next instance when one is down (as a load balancer would)."""
    path = DISCHARGE + "/feedback"
    for attempt in range(len(servers)):
        server = servers[(n + attempt) % len(servers)]
        try:
            with new_session() as session:
                response = session.post(server.url(path), json=feedback_body(card, n), headers=signed(path), timeout=30)
                answer = response.json() if response.status_code == 200 else None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            continue  # refused, or killed while it answered: not acknowledged, so the next instance is asked
        assert response.status_code == 200, response.text
        # 200 is the acknowledgement. stored may be 0 when an instance killed after its commit
        # never answered and the retry found the entry already there.
        return bool(answer is not None and answer["stored"] in (0, 1))
    return False


def report_total(server: Server) -> int:
    result = run_cli("report", "--config", str(server.config), "--format", "json")
    assert result.returncode == 0, result.stderr
    return sum(r["accepted"] + r["overridden"] for r in json.loads(result.stdout)["rules"])


def test_500_feedback_posts_over_two_instances_count_500(fresh_server: Callable[..., Server], pg_url: str) -> None:
    first, second = two_servers(fresh_server, pg_url)
    cards = issue_cards(first, 5) + issue_cards(second, 5)
    with ThreadPoolExecutor(max_workers=8) as pool:
        stored = list(pool.map(lambda n: post_feedback([first, second], cards[n % len(cards)], n), range(500)))
    assert stored.count(True) == 500
    assert report_total(first) == 500 and report_total(second) == 500


def test_a_jwt_replayed_against_the_other_instance_is_refused(
    fresh_server: Callable[..., Server], pg_url: str
) -> None:
    first, second = two_servers(fresh_server, pg_url)
    once = {"Authorization": f"Bearer {token(aud=PUBLIC + '/cds-services')}"}
    with new_session() as session:
        assert session.get(first.url("/cds-services"), headers=once, timeout=10).status_code == 200
        assert session.get(second.url("/cds-services"), headers=once, timeout=10).status_code == 401
        assert session.get(first.url("/cds-services"), headers=once, timeout=10).status_code == 401


def test_an_instance_killed_mid_load_loses_no_acknowledged_feedback(
    fresh_server: Callable[..., Server], pg_url: str
) -> None:
    first, second = two_servers(fresh_server, pg_url)
    cards = issue_cards(second, 4)
    acknowledged: list[int] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        if n == 150:  # SIGKILL the instance mid-load: its workers, then its master
            subprocess.run(["pkill", "-KILL", "-P", str(first.process.pid)], check=False)
            first.process.kill()
        if post_feedback([first, second], cards[n % len(cards)], n):
            with lock:
                acknowledged.append(n)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(400)))
    with new_session() as session:
        assert session.get(second.url("/healthz"), timeout=10).status_code == 200
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar_one()
    finally:
        engine.dispose()
    assert len(acknowledged) == 400
    assert stored == 400
