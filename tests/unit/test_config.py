"""Configuration: validated against config/schema.json, every violation listed by path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cds_service import config, create_app
from cds_service.cli import main
from cds_service.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def broken(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    data["fhir"]["max_pages"] = "many"
    data["drugs"]["cyanocobalamin"]["hcpcs"] = "not-a-code"
    del data["store"]
    return write(tmp_path, data)


def test_default_config_is_valid() -> None:
    settings = config.load(ROOT / "config" / "default.yaml")
    assert settings.port == 8080 and settings.host == "127.0.0.1"
    assert settings.catalog.drugs["cyanocobalamin"].hcpcs == ("J3420",)
    assert settings.partb.ids[0] == "2024q1" and len(settings.partb.ids) >= 9


def test_every_violation_is_listed_by_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(broken(tmp_path))
    text = str(info.value)
    assert "fhir/max_pages" in text
    assert "drugs/cyanocobalamin/hcpcs" in text
    assert "'store' is a required property" in text
    assert len(info.value.problems) == 3


def test_invalid_config_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        create_app(str(broken(tmp_path)))


def test_unknown_rule_id_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    data["rules"]["no-such-rule"] = {"enabled": True}
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, data))
    assert info.value.problems[0].startswith("rules:")


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("auth: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "absent.yaml")


def test_environment_variable_selects_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    data["server"]["port"] = 9999
    monkeypatch.setenv("CDS_SERVICE_CONFIG", str(write(tmp_path, data)))
    assert config.load().port == 9999


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / "default.yaml")]) == 0
    assert main(["check-config", str(broken(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "fhir/max_pages" in err and "drugs/cyanocobalamin/hcpcs" in err and "Traceback" not in err


def test_production_example_is_valid_and_safe() -> None:
    settings = config.load(ROOT / "config" / "production.example.yaml")
    assert settings.auth.required is True
    assert settings.console_enabled is False
    assert settings.store_url.startswith("postgresql")
    issuers = [i["iss"] for i in settings.raw["auth"]["trusted_issuers"]]
    assert "https://sandbox.cds-hooks.org" not in issuers
    assert all(s.startswith("https://") for s in settings.fhir.allowed_servers)


def test_yaml_is_read_by_libyaml_with_pyyamls_results_and_errors() -> None:
    assert config.SAFE_LOADER is yaml.CSafeLoader
    for path in [ROOT / "config" / "default.yaml", *sorted((ROOT / "cards").glob("*.yaml"))]:
        text = path.read_text(encoding="utf-8")
        assert config.safe_load(text) == yaml.safe_load(text), path.name
    for bad in ["a: [1", "\x00", "a: *x", "a: \ud800"]:  # the last: a lone surrogate, as a JSON escape gives
        with pytest.raises(yaml.YAMLError):
            config.safe_load(bad)


def test_a_misspelled_key_is_named_with_the_key_it_may_mean() -> None:
    data = yaml.safe_load(config.DEFAULT_CONFIG.read_text())
    data["rule"] = data.pop("rules")
    data["console"]["tokn"] = "x"
    data["x-anchors"] = {"free": True}  # a free key is no problem
    assert config.problems(data) == [
        "(top level): unknown key 'rule'; did you mean 'rules'? (free keys start with x-)",
        "(top level): 'rules' is a required property",
        "console: unknown key 'tokn'; did you mean 'token'?",
    ]
