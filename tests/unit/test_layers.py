"""The layering of STYLE.md: rules import only the standard library and msgspec; every rule has config and a card."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cds_service
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


# Imports point one way: the serving layers (web, console, app, server, worker, cli) import the service and
# what is under it, never the other way.
SERVING = ("cds_service.web", "cds_service.console", "cds_service.app", "cds_service.server", "cds_service.worker",
           "cds_service.arrival", "cds_service.cli")
BY_DESIGN = {("cds_service", "cds_service.app")}  # the package exports create_app (CONTRACT)


def serving_imports(path: Path) -> set[str]:
    """The serving-layer modules a file imports (`from cds_service.web.auth import X` is cds_service.web.auth,
    `from cds_service import app` cds_service.app)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cds_service":
                modules |= {f"cds_service.{alias.name}" for alias in node.names}
            else:
                modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
    return {name for name in modules if name in SERVING or name.startswith(tuple(s + "." for s in SERVING))}


def test_nothing_under_the_serving_layers_imports_them() -> None:
    package = Path(cds_service.__file__).parent
    up = set()
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        if not module.startswith(SERVING):
            up |= {(module, name) for name in serving_imports(path)}
    assert up - BY_DESIGN == set()


# One hook call's pipeline, top down: web -> service -> fhir / facts -> rules (issue 21). A module imports only
# from its own layer and those below it; the audit, another caller of the pipeline, sits beside the service.
PIPELINE = (
    ("cds_service.service", "cds_service.runtime", "cds_service.audit"),
    ("cds_service.facts", "cds_service.fhir"),
    ("cds_service.rules",),
)


def imports_of(path: Path) -> set[str]:
    """Every cds_service module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("cds_service.")}


def layer_of(module: str) -> int | None:
    for level, prefixes in enumerate(PIPELINE):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def test_the_pipeline_imports_point_down() -> None:
    package = Path(cds_service.__file__).parent
    up = set()
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        level = layer_of(module)
        if level is None:
            continue
        for name in imports_of(path):
            other = layer_of(name)
            if (other is not None and other < level) or name.startswith(tuple(s + "." for s in SERVING)) or \
                    name in SERVING:
                up.add((module, name))
    assert up == set()


def test_the_audits_two_engines_do_not_import_each_other_both_ways() -> None:
    package = Path(cds_service.__file__).parent / "audit"
    assert "cds_service.audit.job" not in imports_of(package / "dask_path.py")
