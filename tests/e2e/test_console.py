"""The web console in real headless Chromium (Debian's `chromium`), driven by Playwright, against `cds-service serve`.

Never a downloaded browser: Playwright launches /usr/bin/chromium. Screenshots of each page go to
tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DEFAULT_CONFIG, ROOT, suggested_charges
from tests.e2e.conftest import ARTIFACTS, Server, new_session, start_server

playwright_api = pytest.importorskip("playwright.sync_api")

EXAMPLES = ROOT / "cds_service" / "console" / "examples"
TOKEN = "console-" + uuid.uuid4().hex
XSS_TEXT = '<img src=x onerror="window.pwned=1;alert(1)"><script>window.pwned=2;alert(2)</script>'


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(next(EXAMPLES.glob(f"{name}*.json")).read_text())
    return data


def api_call(server: Server, item: dict[str, Any]) -> dict[str, Any]:
    """The service's own answer to an example, through the HTTP API."""
    body = copy.deepcopy(item["request"])
    if body["hook"] == "__CLOSE_HOOK__":
        body["hook"] = "org.injection-billing.encounter-close"
    with new_session() as http:
        response = http.post(server.url(f"/cds-services/{item['service']}"), json=body, timeout=20)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("console"), {"console": {"enabled": True, "token": ""}}, workers=2)
    yield srv
    srv.stop()



class Watched:
    """A page that records every dialog, console error and uncaught page error."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


@pytest.fixture
def watched(browser: Any) -> Iterator[Callable[[], Watched]]:
    """New browser contexts (own cookies); none may log a console error or open a dialog."""
    opened: list[Watched] = []

    def open_page() -> Watched:
        w = Watched(browser.new_context())
        opened.append(w)
        return w

    yield open_page
    for w in opened:
        w.context.close()
    for w in opened:
        assert w.errors == [], f"browser console errors: {w.errors}"
        assert w.dialogs == [], f"dialogs opened: {w.dialogs}"


def evaluate_example(page: Any, server: Server, example_id: str) -> dict[str, Any]:
    page.goto(server.url("/console"))
    page.select_option("#example", example_id)
    playwright_api.expect(page.locator("#request_json")).not_to_have_value("")  # console.js loaded the example
    page.click("#evaluate")
    page.wait_for_selector("#raw-json")
    shown: dict[str, Any] = json.loads(page.text_content("#raw-json") or "")
    return shown


def charges_on_page(page: Any) -> list[tuple[str, float, tuple[str, ...]]]:
    out = []
    for charge in page.query_selector_all(".charge"):
        code = charge.query_selector(".charge-code").inner_text().strip()
        units = float(charge.query_selector(".charge-units").inner_text().strip())
        modifiers = tuple(m.inner_text().strip() for m in charge.query_selector_all(".charge-modifier"))
        out.append((code, units, modifiers))
    return out


@pytest.mark.parametrize("example_id", ["03-units-2000mcg-order-sign", "09-same-day-em-needs-25"])
def test_example_cards_match_the_json_response(
    console_server: Server, watched: Callable[[], Watched], example_id: str
) -> None:
    w = watched()
    shown = evaluate_example(w.page, console_server, example_id)
    assert shown == api_call(console_server, example(example_id))  # the same answer as POST /cds-services/{id}
    cards = shown["cards"]
    assert cards
    summaries = [s.inner_text().strip() for s in w.page.query_selector_all(".card .card-summary")]
    assert summaries == [card["summary"] for card in cards]
    indicators = [c.get_attribute("class") for c in w.page.query_selector_all("article.card")]
    assert [f"card card-{card['indicator']}" for card in cards] == indicators
    assert [r.get_attribute("data-rule") for r in w.page.query_selector_all("article.card")] == [
        card["source"]["topic"]["code"] for card in cards
    ]
    expected = [(code, float(units), mods) for code, units, mods in suggested_charges(shown)]
    assert charges_on_page(w.page) == expected
    for wanted in example(example_id)["expect"]["charges_present"]:
        assert any(code == wanted["code"] for code, _, _ in expected)
    assert w.page.inner_text(".card-source").startswith("Source: Injection Billing CDS")
    assert w.page.query_selector_all(".override-reason")
    assert float(w.page.inner_text("#elapsed-ms")) >= 0
    if example_id.startswith("09"):
        assert ("99213", 1.0, ("25",)) in charges_on_page(w.page)
        w.screenshot("try-a-request")


def test_bad_json_and_a_4xx_show_the_operation_outcome(console_server: Server, watched: Callable[[], Watched]) -> None:
    w = watched()
    w.page.goto(console_server.url("/console"))
    w.page.fill("#request_json", '{"hook": "order-sign", ')
    w.page.click("#evaluate")
    assert "The request body is not valid JSON." in w.page.inner_text("#outcome")
    assert json.loads(w.page.text_content("#raw-json") or "")["resourceType"] == "OperationOutcome"

    w.page.fill("#request_json", json.dumps(example("01")["request"]))
    w.page.select_option("#service", "injection-billing-order-sign")
    w.page.click("#evaluate")
    outcome = w.page.inner_text("#outcome")
    assert outcome.startswith("400 invalid")
    assert "does not match service 'injection-billing-order-sign'" in outcome
    assert "Traceback" not in w.page.content()
    w.screenshot("try-error")


def test_script_and_img_in_request_text_render_as_text(
    console_server: Server, watched: Callable[[], Watched], tmp_path: Path
) -> None:
    body = copy.deepcopy(example("14")["request"])
    administration = body["prefetch"]["administrations"]["entry"][0]["resource"]
    administration["medicationCodeableConcept"] = {"text": XSS_TEXT}
    administration["dosage"]["text"] = XSS_TEXT
    w = watched()
    w.page.goto(console_server.url("/console"))
    # Through the upload field, as a developer would send a saved request.
    w.page.set_input_files("#request_file", files=[{
        "name": "request.json", "mimeType": "application/json", "buffer": json.dumps(body).encode(),
    }])
    w.page.click("#evaluate")
    w.page.wait_for_selector("#raw-json")
    shown = json.loads(w.page.text_content("#raw-json") or "")
    drug_cards = [c for c in shown["cards"] if c["source"]["topic"]["code"] == "drug-uncoded"]
    assert drug_cards and "<img src=x" in drug_cards[0]["summary"]
    card = w.page.query_selector('article.card[data-rule="drug-uncoded"]')
    assert "<img src=x" in card.query_selector(".card-summary").inner_text()  # shown as text
    assert "<script>" in card.query_selector(".card-detail").inner_text()
    w.page.wait_for_timeout(300)  # time for an injected onerror to fire, were there one
    assert w.page.evaluate("window.pwned") is None
    assert w.page.query_selector_all("img") == []
    scripts = [s.get_attribute("src") or "(inline)" for s in w.page.query_selector_all("script")]
    assert len(scripts) == 1 and scripts[0].endswith("/console/static/console.js")
    assert w.page.query_selector_all("[onerror]") == []
    w.screenshot("try-xss")


def test_invalid_configuration_shows_schema_errors_by_path(
    console_server: Server, watched: Callable[[], Watched]
) -> None:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["rules"]["admin-96372"]["enabled"] = "sometimes"
    config["drugs"]["cyanocobalamin"]["max_dose"]["value"] = "a lot"
    del config["payers"]
    w = watched()
    w.page.goto(console_server.url("/console/config"))
    assert w.page.query_selector('#rules-table tr[data-rule="admin-96372"]')
    w.page.fill("#config_yaml", yaml.safe_dump(config, sort_keys=False))
    w.page.click("#what-if-button")
    errors = [e.inner_text() for e in w.page.query_selector_all("#config-errors .config-error")]
    assert any(e.startswith("rules/admin-96372/enabled:") for e in errors), errors
    assert any(e.startswith("drugs/cyanocobalamin/max_dose/value:") for e in errors), errors
    assert any(e.startswith("(top level):") and "payers" in e for e in errors), errors
    assert w.page.query_selector("#what-if-table") is None
    w.screenshot("config-invalid")

    w.page.fill("#config_yaml", "rules: [unclosed")
    w.page.click("#what-if-button")
    assert "not valid YAML" in w.page.inner_text("#config-errors")


def test_what_if_disabling_a_rule_lists_its_cards_as_disappearing(
    console_server: Server, watched: Callable[[], Watched]
) -> None:
    config_before = console_server.config.read_bytes()
    had_it = {
        path.stem for path in EXAMPLES.glob("*.json")
        if "admin-96372" in {c["source"]["topic"]["code"] for c in api_call(console_server, example(path.stem))["cards"]
                             }
    }
    assert len(had_it) >= 3
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["rules"]["admin-96372"]["enabled"] = False
    w = watched()
    w.page.goto(console_server.url("/console/config"))
    w.page.fill("#config_yaml", yaml.safe_dump(config, sort_keys=False))
    w.page.click("#what-if-button")
    w.page.wait_for_selector("#what-if-table")
    assert w.page.query_selector("#config-errors") is None
    rows = w.page.query_selector_all("#what-if-table tr.change")
    changes = {(r.get_attribute("data-example"), r.get_attribute("data-kind"), r.get_attribute("data-rule"))
               for r in rows}
    assert {ex for ex, kind, rule in changes if kind == "disappears" and rule == "admin-96372"} == had_it
    assert not [c for c in changes if c[1] == "appears"]
    assert f"{len(had_it)} of {len(list(EXAMPLES.glob('*.json')))} examples" in w.page.inner_text("#what-if-summary")
    w.screenshot("config-what-if")
    assert console_server.config.read_bytes() == config_before  # never writes the configuration
    w.page.goto(console_server.url("/console/config"))
    assert w.page.inner_text('#rules-table tr[data-rule="admin-96372"] td.on') == "on"


def feedback_counts(page: Any, rule: str) -> tuple[int, int, int]:
    row = page.query_selector(f'#feedback-table tr[data-rule="{rule}"]')
    if row is None:
        return 0, 0, 0
    shown, accepted, overridden = (int(row.query_selector(f".{k}").inner_text())
                                   for k in ("shown", "accepted", "overridden"))
    return shown, accepted, overridden


def test_feedback_dashboard_counts_change_after_feedback(
    console_server: Server, watched: Callable[[], Watched]
) -> None:
    w = watched()
    w.page.goto(console_server.url("/console/feedback"))
    before = feedback_counts(w.page, "admin-96372")

    item = example("02")
    item["request"]["hookInstance"] = str(uuid.uuid4())  # new cards, so they are counted as shown
    cards = api_call(console_server, item)["cards"]
    admin = next(c for c in cards if c["source"]["topic"]["code"] == "admin-96372")
    reason = admin["overrideReasons"][0]
    feedback = {"feedback": [{
        "card": admin["uuid"], "outcome": "overridden", "outcomeTimestamp": "2030-01-02T10:00:00Z",
        "overrideReason": {"reason": {"code": reason["code"], "system": reason["system"],
                                      "display": reason["display"]}},
    }]}
    with new_session() as http:
        response = http.post(console_server.url(f"/cds-services/{item['service']}/feedback"), json=feedback, timeout=10)
    assert response.status_code == 200, response.text

    w.page.reload()
    shown, accepted, overridden = feedback_counts(w.page, "admin-96372")
    assert (shown, accepted, overridden) == (before[0] + 1, before[1], before[2] + 1)
    row = w.page.query_selector('#feedback-table tr[data-rule="admin-96372"]')
    assert reason["display"] in row.inner_text()
    assert re.fullmatch(r"\d+\.\d%", row.query_selector(".rate").inner_text())
    assert w.page.query_selector("svg#override-chart")
    assert w.page.query_selector('svg#override-chart g.bar[data-rule="admin-96372"]')
    w.screenshot("feedback")

    w.page.fill("#since", "2030-01-01")
    w.page.fill("#until", "2030-01-02")
    w.page.click("#range-button")
    assert feedback_counts(w.page, "admin-96372")[2] >= 1
    w.page.fill("#since", "2030-01-03")
    w.page.fill("#until", "2030-01-31")
    w.page.click("#range-button")
    assert feedback_counts(w.page, "admin-96372") == (0, 0, 0)
    assert w.page.query_selector("svg#override-chart")


def test_token_login_keeps_a_signed_httponly_cookie(
    fresh_server: Callable[..., Server], watched: Callable[[], Watched]
) -> None:
    srv = fresh_server({"console": {"enabled": True, "token": TOKEN}})
    w = watched()
    w.page.goto(srv.url("/console/config"))
    assert w.page.url.endswith("/console/login")
    w.screenshot("login")
    w.page.fill("#token", "wrong-" + TOKEN)
    w.page.click("#login-button")
    assert "not the console token" in w.page.inner_text("#login-error")
    assert w.page.query_selector("#try-form") is None

    w.page.fill("#token", TOKEN)
    w.page.click("#login-button")
    w.page.wait_for_selector("#try-form")
    cookie = next(c for c in w.context.cookies() if c["name"] == "cds_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert "cds_console" not in w.page.evaluate("document.cookie")
    for path in ("/console/config", "/console/feedback", "/console"):  # the cookie keeps you in, on either worker
        w.page.goto(srv.url(path))
        assert not w.page.url.endswith("/login")
    assert w.page.query_selector("#try-form")
    evaluate_example(w.page, srv, "01-happy-im-medicare")
    assert w.page.query_selector_all("article.card")

    with new_session() as http:  # without the cookie: the login page, whatever the Authorization header says
        response = http.get(srv.url("/console"), headers={"Authorization": f"Bearer {TOKEN}"},
                            allow_redirects=False, timeout=10)
        assert response.status_code == 303 and response.headers["Location"].endswith("/console/login")
        forged = http.get(srv.url("/console"), cookies={"cds_console": cookie["value"][:-2] + "xx"},
                          allow_redirects=False, timeout=10)
        assert forged.status_code == 303

    w.page.click(".logout button")
    w.page.wait_for_selector("#login-form")
    w.page.goto(srv.url("/console"))
    assert w.page.url.endswith("/console/login")


def test_console_disabled_is_a_json_404(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server({"console": {"enabled": False, "token": ""}}, workers=1)
    with new_session() as http:
        for path in ("/console", "/console/", "/console/config", "/console/static/console.js"):
            response = http.get(srv.url(path), timeout=10)
            assert response.status_code == 404, path
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.json()["resourceType"] == "OperationOutcome"


def test_the_drug_codes_page_looks_a_drug_up_quarter_by_quarter(
    console_server: Server, watched: Callable[[], Watched]
) -> None:
    w = watched()
    w.page.goto(console_server.url("/console"))
    w.page.click("text=Drug codes")
    quarters = [r.get_attribute("data-quarter") for r in w.page.query_selector_all("#quarters-table tbody tr")]
    assert quarters[:2] == ["2026q1", "2025q4"] and quarters[-1] == "2024q1" and len(quarters) == 9
    w.page.fill("#q", "0009-0280-02")  # Depo-Medrol 40 mg/mL, in the 4-4-2 form a label prints
    w.page.click("#lookup-button")
    assert "NDC 00009-0280-02" in w.page.inner_text("#lookup-read-as")
    rows = {r.get_attribute("data-quarter"): (r.get_attribute("data-code"), r.query_selector(".unit").inner_text(),
                                              r.query_selector(".limit").inner_text())
            for r in w.page.query_selector_all("#lookup-table tbody tr")}
    assert rows["2024 Q1"] == ("J1030", "40 MG", "$6.419")
    assert rows["2025 Q2"] == ("J1010", "1 MG", "$0.110")
    w.screenshot("drug-codes-ndc")
    w.page.fill("#q", "<script>alert(1)</script>")
    w.page.click("#lookup-button")
    assert "not in CMS's Part B files" in w.page.inner_text("#lookup-read-as")


def test_a_hundred_wrong_tokens_over_http_are_locked_out_across_workers(fresh_server: Callable[..., Server]) -> None:
    """The issue's attack, on a real server of two workers: 100 wrong tokens as fast as they go. The first 10 are
    heard (whichever worker takes them: the count is in the store), then 429 with Retry-After; each failure is
    logged with the address, the tokens never."""
    srv = fresh_server({"console": {"enabled": True, "token": TOKEN}})
    statuses = []
    for n in range(100):
        with new_session() as http:  # a new connection each: both workers take a share
            page = http.get(srv.url("/console/login"), timeout=10).text
            form = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert form, page[:300]
            response = http.post(srv.url("/console/login"), data={"csrf_token": form.group(1), "token": f"guess-{n}"},
                                 allow_redirects=False, timeout=10)
            statuses.append(response.status_code)
    assert statuses == [303] * 10 + [429] * 90
    assert 0 < int(response.headers["Retry-After"]) <= 900
    time.sleep(0.3)
    log = srv.stderr()
    failed = [json.loads(line) for line in log.splitlines() if '"console_login_failed"' in line]
    assert sorted(e["failures"] for e in failed) == list(range(1, 11))
    assert {e["address"] for e in failed} == {"127.0.0.1"}
    assert "guess-" not in log and TOKEN not in log
    with new_session() as http:
        metrics = http.get(srv.url("/metrics"), timeout=10).text
    assert 'cds_console_logins_total{outcome="wrong_token"} 10.0' in metrics
    assert 'cds_console_logins_total{outcome="locked"} 90.0' in metrics
