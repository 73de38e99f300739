"""Configuration reload in a running app: a valid change applies; an invalid file keeps the old settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cds_service import create_app, reload
from cds_service.errors import ConfigError
from tests.conftest import load_scenario, topics

DISCHARGE = "/cds-services/injection-billing-encounter-discharge"


class Remember(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def touch_later(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))  # a visibly newer mtime


def test_a_changed_file_is_applied_and_a_broken_one_refused(
    make_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reload, "RELOAD_CHECK_SECONDS", 0.0)
    remember = Remember()
    logging.getLogger("cds_service.reload").addHandler(remember)
    path = make_config()
    app = create_app(str(path))
    try:
        client = app.test_client()
        request = load_scenario("01")["request"]
        assert "admin-96372" in topics(client.post(DISCHARGE, json=request).get_json())

        data = yaml.safe_load(path.read_text())
        data["rules"]["admin-96372"]["enabled"] = False
        touch_later(path, yaml.safe_dump(data))
        assert "admin-96372" not in topics(client.post(DISCHARGE, json=request).get_json())
        assert any("config-reloaded" in line for line in remember.lines)

        data["fhir"]["max_pages"] = "lots"
        data["rules"]["admin-96372"]["enabled"] = True
        touch_later(path, yaml.safe_dump(data))
        response = client.post(DISCHARGE, json=request)
        assert response.status_code == 200
        assert "admin-96372" not in topics(response.get_json())  # the old (last good) settings still hold
        refused = [line for line in remember.lines if "config-reload-refused" in line]
        assert refused and "fhir/max_pages" in refused[0]
    finally:
        logging.getLogger("cds_service.reload").removeHandler(remember)
        app.extensions["cds"].store.dispose()


def test_a_damaged_cms_quarter_is_refused_and_the_loaded_quarters_stay(
    make_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A quarter file that cannot be read (a disk error, a copy cut short) is a refused reload, never a 500."""
    monkeypatch.setattr(reload, "RELOAD_CHECK_SECONDS", 0.0)
    remember = Remember()
    logging.getLogger("cds_service.reload").addHandler(remember)
    quarters = tmp_path / "quarters"
    app = create_app(str(make_config(cms={"quarters_dir": str(quarters)})))
    client = app.test_client()
    quarters.mkdir()
    (quarters / "2026q2.msgpack.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40)  # gzip header, no data
    body = load_scenario("01")["request"]
    try:
        answer = client.post(DISCHARGE, json=body)
        assert answer.status_code == 200 and "admin-96372" in topics(answer.get_json())
        assert app.extensions["cds"].settings.partb.ids[-1] == "2026q1"
        assert any("config-reload-refused" in line and "2026q2.msgpack.gz" in line for line in remember.lines)
    finally:
        logging.getLogger("cds_service.reload").removeHandler(remember)
        app.extensions["cds"].store.dispose()


def test_a_damaged_cms_quarter_at_start_up_is_a_configuration_error(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    quarters = tmp_path / "quarters"
    quarters.mkdir()
    (quarters / "2026q2.msgpack.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError) as refused:
        create_app(str(make_config(cms={"quarters_dir": str(quarters)})))
    assert "cms:" in str(refused.value) and "2026q2.msgpack.gz" in str(refused.value)
