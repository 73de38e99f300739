"""The rule table (cds_service.rules.RULES) is the one list of rules: everything else that names them is held to it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cds_service import config, protocol
from cds_service.cards import CARDS_DIR
from cds_service.rules import GROUPS, RULES

ROOT = Path(__file__).resolve().parents[2]

# shared/domain/RULES.md's rule ids (the card topics the CDS Hooks clients and the scenario checker know).
CATALOG = frozenset({
    "admin-96372", "admin-code-alternative", "multiple-injections", "drug-waste-modifier",
    "route-missing", "route-uncoded", "route-contrary-to-label", "dose-missing", "dose-above-label",
    "drug-uncoded", "admin-time-missing", "dos-mismatch", "diagnosis-missing", "diagnosis-not-covered",
    "frequency-exceeded", "performer-missing", "status-not-completed", "patient-supplied-drug",
    "noc-drug-code", "compounded-drug", "self-administered-drug", "same-day-em-modifier-25",
    "em-99211-bundled", "facility-setting", "charge-code-mismatch", "charge-units-mismatch",
    "charge-unsupported", "invalid-resource", "drug-unknown", "code-not-current",
})


def test_the_table_holds_every_rule_of_the_catalog() -> None:
    assert set(RULES) >= CATALOG


def test_the_config_schema_takes_the_tables_ids_and_no_other() -> None:
    on_disk = json.loads((ROOT / "config" / "schema.json").read_text())
    assert "enum" not in on_disk["$defs"]["rule_id"]  # the file says what an id looks like; the table which
    assert config.schema()["$defs"]["rule_id"]["enum"] == list(RULES)
    rules = {rule_id: {"enabled": True} for rule_id in RULES}
    assert not [p for p in config.problems(config.read(config.DEFAULT_CONFIG)) if p.startswith("rules")]
    found = config.problems({**config.read(config.DEFAULT_CONFIG), "rules": {**rules, "admin-9637": {"enabled": True}}})
    assert found == [f"rules: 'admin-9637' is not one of {list(RULES)}"]


def test_the_option_groups_are_the_tables_groups() -> None:
    assert list(protocol.OPTION_GROUPS) == list(GROUPS)
    assert set().union(*GROUPS.values()) == set(RULES)


def test_every_rule_has_its_card_text_and_its_configuration() -> None:
    assert {path.stem for path in CARDS_DIR.glob("*.yaml")} == set(RULES)
    default = yaml.safe_load(config.DEFAULT_CONFIG.read_text())
    assert sorted(default["rules"]) == sorted(RULES)


def test_each_rule_takes_what_its_scope_says() -> None:
    for rule_id, rule in RULES.items():
        arguments = rule.check.__code__.co_varnames[:rule.check.__code__.co_argcount]
        assert arguments == (("inj", "visit") if rule.scope == "injection" else ("visit",)), rule_id
