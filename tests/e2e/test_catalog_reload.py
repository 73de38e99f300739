"""A quarter imported while `cds-service serve` runs is loaded by every worker without a restart, and
/healthz says which quarters are loaded."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests import cmsfiles
from tests.charts import NDC, administration, answer_charges, discharge, medication
from tests.e2e.conftest import Server, new_session, run_cli

RELOAD_WAIT_SECONDS = 20


def quarters(session: requests.Session, server: Server) -> list[str]:
    answer = session.get(server.url("/healthz"), timeout=10)
    assert answer.status_code == 200
    listed: list[str] = answer.json()["cms_quarters"]["quarters"]
    return listed


def test_an_imported_quarter_is_served_without_a_restart(fresh_server: Callable[..., Server], tmp_path: Path) -> None:
    server = fresh_server({"cms": {"quarters_dir": str(tmp_path / "quarters")},
                           "fhir": {"allowed_servers": ["http://127.0.0.1:9/fhir"]}})
    pid = server.process.pid
    with new_session() as session:
        assert quarters(session, server)[-1] == "2026q1"
        files = cmsfiles.write(cmsfiles.quarter_2026q2(), tmp_path / "download", dt.date(2026, 4, 1),
                               dt.date(2026, 6, 30))
        done = run_cli("catalog", "import", *map(str, files), "--config", str(server.config))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + RELOAD_WAIT_SECONDS
        in_a_row = 0
        while in_a_row < 8 and time.monotonic() < deadline:  # both workers, whichever answers
            in_a_row = in_a_row + 1 if quarters(session, server)[-1] == "2026q2" else 0
            time.sleep(0.1 if in_a_row else 0.5)
        assert in_a_row == 8, f"2026 Q2 not loaded within {RELOAD_WAIT_SECONDS} s:\n{server.stderr()}"
        body = discharge("2026-05-05", [administration(1, medication((NDC, "00009-0280-02")),
                                                       at="2026-05-05T10:15:00-05:00", dose=(40, "mg"))])
        answer = session.post(server.url("/cds-services/injection-billing-encounter-discharge"), json=body, timeout=20)
        assert answer.status_code == 200
        assert {(code, units) for _, code, units, _ in answer_charges(answer.json())} == {("96372", 1), ("J1011", 1)}
    assert server.process.pid == pid and server.process.poll() is None
    assert '"cms_quarters"' in server.stderr() and "2026q2" in server.stderr()
