"""SIGHUP to a real server: an invalid file is refused and the service keeps serving the old settings."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import yaml

from tests.conftest import load_scenario
from tests.e2e.conftest import Server, new_session

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"


def topics_now(server: Server) -> list[str]:
    with new_session() as session:
        response = session.post(server.url(DISCHARGE), json=load_scenario("01")["request"], timeout=30)
    assert response.status_code == 200
    return [c["source"]["topic"]["code"] for c in response.json()["cards"]]


def wait_for(check: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def test_sighup_with_a_broken_file_keeps_serving_then_applies_a_good_one(
    fresh_server: Callable[..., Server],
) -> None:
    server = fresh_server()
    good = yaml.safe_load(server.config.read_text())
    assert "admin-96372" in topics_now(server)

    broken = dict(good, fhir={**good["fhir"], "max_pages": "lots"})
    server.config.write_text(yaml.safe_dump(broken))
    server.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "config-reload-refused" in server.log.read_text())
    time.sleep(1)
    for _ in range(4):  # both restarted workers
        assert "admin-96372" in topics_now(server)
    assert server.process.poll() is None

    changed = dict(good, rules={**good["rules"], "admin-96372": {"enabled": False}})
    server.config.write_text(yaml.safe_dump(changed))
    server.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: all("admin-96372" not in topics_now(server) for _ in range(4)))
