"""Feedback analytics: the report command and the authenticated JSON endpoint, over real stored rows."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cds_service import create_app
from cds_service.cli import main
from tests.conftest import load_scenario

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"
TOKEN = "report-token-for-tests"


def seed(client: Any) -> dict[str, str]:
    """Two calls of scenario 01 (two hookInstances): 4 cards; feedback on three of them."""
    uuids: dict[str, list[str]] = {}
    for n in range(2):
        request = copy.deepcopy(load_scenario("01")["request"])
        request["hookInstance"] = f"report-{n}"
        for card in client.post(DISCHARGE, json=request).get_json()["cards"]:
            uuids.setdefault(card["source"]["topic"]["code"], []).append(card["uuid"])
    entries = [
        {"card": uuids["admin-96372"][0], "outcome": "accepted", "acceptedSuggestions": [{"id": "s"}],
         "outcomeTimestamp": "2025-03-04T15:00:00Z"},
        {"card": uuids["admin-96372"][1], "outcome": "overridden", "outcomeTimestamp": "2025-03-05T15:00:00Z",
         "overrideReason": {"reason": {"code": "already-billed", "display": "Already billed on another charge"}}},
        {"card": uuids["drug-waste-modifier"][0], "outcome": "overridden", "outcomeTimestamp": "2025-03-05T16:00:00Z",
         "overrideReason": {"reason": {"code": "multi-dose-vial", "display": "Drawn from a multi-dose vial"}}},
    ]
    assert client.post(DISCHARGE + "/feedback", json={"feedback": entries}).get_json()["stored"] == 3
    return {rule: ids[0] for rule, ids in uuids.items()}


@pytest.fixture
def config(make_config: Callable[..., Path]) -> Path:
    return make_config(reports={"token": TOKEN})


@pytest.fixture
def seeded(config: Path) -> Any:
    app = create_app(str(config))
    seed(app.test_client())
    yield app
    app.extensions["cds"].store.dispose()


def test_report_table(seeded: Any, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rule", "shown", "accepted", "overridden", "override_rate", "top_override_reasons"]
    rows = {line.split()[0]: line for line in lines[2:-2]}  # then a blank line and the rate's definition
    assert rows["admin-96372"].split()[1:5] == ["2", "1", "1", "50.0%"]
    assert "Already billed on another charge (1)" in rows["admin-96372"]
    assert rows["drug-waste-modifier"].split()[1:5] == ["2", "0", "1", "100.0%"]


def test_report_json_and_date_range(seeded: Any, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(config), "--format", "json", "--since", "2025-03-05"]) == 0
    rules = {r["rule"]: r for r in json.loads(capsys.readouterr().out)["rules"]}
    assert (rules["admin-96372"]["accepted"], rules["admin-96372"]["overridden"]) == (0, 1)
    assert rules["admin-96372"]["override_rate"] == 1.0
    assert rules["drug-waste-modifier"]["top_override_reasons"] == [
        {"reason": "Drawn from a multi-dose vial", "count": 1}]


def test_report_csv(seeded: Any, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(config), "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "rule,shown,accepted,overridden,override_rate,top_override_reasons"
    assert "admin-96372,2,1,1,50.0%,Already billed on another charge (1)" in out


def test_report_rejects_a_bad_date(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(config), "--since", "March"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_endpoint_needs_its_token(seeded: Any) -> None:
    client = seeded.test_client()
    assert client.get("/reports/feedback").status_code == 401
    assert client.get("/reports/feedback", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/reports/feedback?until=2025-03-04", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    rules = {r["rule"]: r for r in ok.get_json()["rules"]}
    assert (rules["admin-96372"]["accepted"], rules["admin-96372"]["overridden"]) == (1, 0)
    assert ok.get_json()["override_rate"].startswith("override rate = overridden / (accepted + overridden)")
    bad = client.get("/reports/feedback?since=soon", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400


def test_endpoint_is_off_without_a_token(make_config: Callable[..., Path]) -> None:
    app = create_app(str(make_config()))
    try:
        assert app.test_client().get("/reports/feedback").status_code == 404
    finally:
        app.extensions["cds"].store.dispose()


@pytest.mark.parametrize(("until", "outcomes"), [
    ("2025-03-04", (1, 0)),  # a day: included whole
    ("2025-03-05", (1, 1)),
    ("2025-03-05T00:00:00Z", (1, 0)),  # an instant: the first one left out
])
def test_the_cli_the_console_and_the_endpoint_read_a_range_alike(
        seeded: Any, config: Path, capsys: pytest.CaptureFixture[str], until: str, outcomes: tuple[int, int]) -> None:
    assert main(["report", "--config", str(config), "--format", "json", "--until", until]) == 0
    cli = {r["rule"]: r for r in json.loads(capsys.readouterr().out)["rules"]}["admin-96372"]
    client = seeded.test_client()
    http = {r["rule"]: r for r in client.get(f"/reports/feedback?until={until}", headers={
        "Authorization": f"Bearer {TOKEN}"}).get_json()["rules"]}["admin-96372"]
    assert (cli["accepted"], cli["overridden"]) == (http["accepted"], http["overridden"]) == outcomes
    if len(until) == 10:  # the console's date field
        token = seeded.extensions["cds"].settings.console_token
        client.post("/console/login", data={"token": token})
        page = client.get(f"/console/feedback?until={until}").get_data(as_text=True)
        row = page.split('data-rule="admin-96372"')[1]
        assert f'<td class="num accepted">{outcomes[0]}</td>' in row
        assert f'<td class="num overridden">{outcomes[1]}</td>' in row
        assert "Override rate = overridden / (accepted + overridden)" in page


def test_the_table_says_what_the_override_rate_is(seeded: Any, config: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "override rate = overridden / (accepted + overridden): the share of the feedback received that overrode "
        "the card; cards without feedback do not count")


def test_a_range_by_days_in_either_iso_form_and_to_the_last_day() -> None:
    from cds_service.analytics import parse_range
    assert parse_range("2025-03-01", "20250331") == (dt.datetime(2025, 3, 1, tzinfo=dt.UTC),
                                                     dt.datetime(2025, 4, 1, tzinfo=dt.UTC))
    assert parse_range(None, "9999-12-31") == (None, None)  # to the end of the calendar: no upper bound


def test_an_instant_outside_the_calendar_in_utc_is_a_400_not_a_store_error(seeded: Any) -> None:
    answer = seeded.test_client().get("/reports/feedback?since=0001-01-01T00:00:00%2B14:00",
                                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 400
