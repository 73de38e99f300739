"""GET /metrics of a real `cds-service serve --workers 2`: one scrape sums what every worker counted."""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import load_scenario, topics
from tests.e2e.conftest import Server, new_session

DISCHARGE = "injection-billing-encounter-discharge"
N = 20


def scrape(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one GET /metrics, by (name, labels), over a connection of its own."""
    with new_session() as http:
        response = http.get(server.url("/metrics"), timeout=10)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def call_n_times(server: Server, n: int) -> list[str]:
    """n service calls, each on a new connection (so the workers share them); the card topics returned."""
    request = copy.deepcopy(load_scenario("01")["request"])
    fired: list[str] = []
    for _ in range(n):
        with new_session() as http:
            response = http.post(server.url(f"/cds-services/{DISCHARGE}"), json=request,
                                 headers={"Connection": "close"}, timeout=30)
        assert response.status_code == 200, response.text[:500]
        fired += topics(response.json())
    return fired


def workers_of(server: Server) -> set[int]:
    """The pids of the gunicorn workers: the master's children, read from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == server.process.pid:
            found.add(int(entry))
    return found


def metrics_dir_of(pid: int) -> Path:
    """Where a worker keeps its values: the folder of the <type>_<pid>.db files it has mapped."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1]
        if path.endswith(f"_{pid}.db"):
            return Path(path).parent
    raise AssertionError(f"worker {pid} maps no metrics file: not in multiprocess mode")


def all_mapped(pids: set[int]) -> bool:
    try:
        return len(pids) == 2 and all(metrics_dir_of(pid) for pid in pids)
    except (AssertionError, OSError):
        return False


def test_requests_from_both_workers_sum_in_one_scrape(fresh_server: Callable[..., Server]) -> None:
    server = fresh_server(workers=2)
    deadline = time.monotonic() + 15  # /healthz answered from one worker; the other may still be booting
    while time.monotonic() < deadline and not all_mapped(workers_of(server)):
        time.sleep(0.2)
    workers = workers_of(server)
    assert len(workers) == 2
    dirs = {metrics_dir_of(pid) for pid in workers}
    assert len(dirs) == 1
    (metrics_dir,) = dirs
    assert metrics_dir.stat().st_mode & 0o077 == 0  # private to the user

    fired = call_n_times(server, N)
    samples = scrape(server)
    call = frozenset({"service": DISCHARGE, "endpoint": "call"}.items())
    ok = frozenset({"service": DISCHARGE, "endpoint": "call", "status": "200"}.items())
    assert samples[("cds_requests_total", ok)] == N
    assert samples[("cds_request_duration_seconds_count", call)] == N
    assert samples[("cds_request_duration_seconds_bucket", call | {("le", "+Inf")})] == N
    for rule in set(fired):
        assert samples[("cds_cards_total", frozenset({("rule", rule)}))] == fired.count(rule)

    # A worker that dies leaves its counts in the sums; its replacement counts on from there.
    os.kill(min(workers), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (len(workers_of(server)) != 2 or min(workers) in workers_of(server)):
        time.sleep(0.2)
    assert min(workers) not in workers_of(server) and len(workers_of(server)) == 2, server.stderr()
    call_n_times(server, 2)
    assert scrape(server)[("cds_requests_total", ok)] == N + 2

    assert server.stop() == 0
    assert not metrics_dir.exists(), "the private metrics folder outlived the server"


def test_operator_folder_is_emptied_at_start_and_kept(
    fresh_server: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    stale = folder / "counter_1.db"
    stale.write_bytes(b"left by an earlier run")
    keep = folder / "README"
    keep.write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    server = fresh_server(workers=2)
    assert not stale.exists()
    assert {metrics_dir_of(pid) for pid in workers_of(server)} == {folder}
    call_n_times(server, 3)
    ok: dict[str, Any] = {"service": DISCHARGE, "endpoint": "call", "status": "200"}
    assert scrape(server)[("cds_requests_total", frozenset(ok.items()))] == 3
    assert server.stop() == 0
    assert keep.exists() and any(folder.glob("counter_*.db"))
