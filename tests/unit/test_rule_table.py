"""The rule table (cds_service.rules.RULES) is the one list of rules: everything else that names them is held to it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cds_service import config, protocol
from cds_service.cards import CARDS_DIR
from cds_service.rules import GROUPS, RULES
from tests.cardshape import RULE_IDS

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_holds_every_rule_of_the_catalog() -> None:
    assert set(RULES) == RULE_IDS  # shared/domain/RULES.md, as tests/cardshape.py copies it


def test_the_config_schema_enum_is_the_table() -> None:
    schema = json.loads((ROOT / "config" / "schema.json").read_text())
    enum = schema["$defs"]["rule_id"]["enum"]
    assert sorted(enum) == sorted(RULES) and len(enum) == len(RULES)


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
