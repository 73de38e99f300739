"""The layering of STYLE.md: rules import only the standard library and msgspec; every rule has config and a card."""

from __future__ import annotations

import json
import subprocess
import sys

from cds_service import config
from cds_service.cards import load_templates
from cds_service.rules import RULES

RULE_IDS_IN_CATALOG = set(config.schema()["$defs"]["rule_id"]["enum"])


def test_rules_import_no_web_http_or_database_library() -> None:
    code = (
        "import sys, json, cds_service.rules, cds_service.rules.model;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names"
        " and m.split('.')[0] not in ('cds_service', 'msgspec', 'typing_extensions') and not m.startswith('_'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_every_rule_is_in_the_catalog_schema_and_has_a_card_template() -> None:
    templates = load_templates()
    for rule_id in RULES:
        assert rule_id in RULE_IDS_IN_CATALOG, rule_id
        assert rule_id in templates, rule_id


def test_every_card_template_is_for_a_known_rule_and_under_140_chars_of_title() -> None:
    for rule_id, template in load_templates().items():
        assert rule_id in RULE_IDS_IN_CATALOG
        assert 0 < len(template.title) < 140
