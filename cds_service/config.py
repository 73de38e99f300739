"""Configuration: YAML, checked against config/schema.json, turned into frozen Settings."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cds_service import partb
from cds_service.catalog import DrugCatalog, PayerProfiles
from cds_service.drugs import CodeClasses
from cds_service.errors import ConfigError
from cds_service.partb.stored import StoredDataError
from cds_service.rules import RULES
from cds_service.rules.model import BillingPolicy

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "config" / "schema.json"
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"
DEFAULT_CLOSE_HOOK = "org.injection-billing.encounter-close"
DEFAULT_QUARTERS_DIR = "var/cms"


@dataclass(frozen=True)
class RuleSettings:
    enabled: bool
    indicator: str | None = None


@dataclass(frozen=True)
class FhirSettings:
    allowed_servers: tuple[str, ...]
    deadline_seconds: float = 4.0
    max_pages: int = 5
    max_response_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class AuthSettings:
    """auth: whether calls need a JWT, from whom (each issuer's entry as configured), the clock skew allowed and
    the public base URL that `aud` names behind a proxy; config_dir is where jwks_file paths start."""

    required: bool
    trusted_issuers: tuple[Mapping[str, Any], ...] = ()
    clock_skew_seconds: float = 5
    public_base_url: str = ""
    config_dir: Path = Path(".")


@dataclass(frozen=True)
class Settings:
    source: str
    raw: Mapping[str, Any]
    host: str
    port: int
    workers: int
    threads: int
    timeout_seconds: float
    max_body_bytes: int
    request_read_seconds: float
    trusted_proxies: int
    max_json_depth: int
    close_hook: str
    max_cards: int
    auth: AuthSettings
    fhir: FhirSettings
    store_url: str
    cors_origins: tuple[str, ...]
    console_enabled: bool
    console_token: str
    console_login_failures: int
    console_lockout_seconds: float
    reports_token: str
    metrics_token: str
    facility_encounter_classes: frozenset[str]
    facility_pos_codes: frozenset[str]
    catalog: DrugCatalog
    partb: partb.PartB  # CMS's quarterly Part B drug files: shipped, and imported into quarters_dir
    quarters_dir: Path
    code_classes: CodeClasses
    payers: PayerProfiles
    policy: BillingPolicy
    rules: Mapping[str, RuleSettings]

    def enabled_rules(self) -> frozenset[str]:
        """The ids of the enabled rules (worked out once)."""
        return self._enabled_rules

    @cached_property
    def _enabled_rules(self) -> frozenset[str]:
        return frozenset(rule_id for rule_id, r in self.rules.items() if r.enabled)


def code_classes(billing: Mapping[str, Any]) -> CodeClasses:
    """Drug class and vaccine kind by code (BILLING-FACTS "Drug class from the code")."""
    chemo = billing.get("antineoplastic_codes", {"first": "J9000", "last": "J9999"})
    vaccines = billing.get("vaccine_codes", [{"first": "90476", "last": "90759"}, {"first": "91300", "last": "91399"}])
    return CodeClasses(
        antineoplastic=(chemo["first"], chemo["last"]),
        hormonal=frozenset(billing.get("hormonal_antineoplastic_codes", [])),
        vaccines=tuple((r["first"], r["last"]) for r in ([vaccines] if isinstance(vaccines, dict) else vaccines)),
        vaccine_kinds={code: kind for kind, codes in billing.get("vaccine_kinds", {}).items() for code in codes},
        vaccine_names=frozenset(name.lower() for name in billing.get("vaccine_names", [])),
    )


@cache
def schema() -> dict[str, Any]:
    """config/schema.json, with the rule ids of the rule table as the enum of its rule_id: the table is the one
    list of rules, and the file says only what a rule id looks like."""
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        loaded: dict[str, Any] = json.load(fh)
    loaded["$defs"]["rule_id"]["enum"] = list(RULES)
    return loaded


def problems(data: Any) -> list[str]:
    """Every schema violation, each prefixed by its path in the document."""
    validator = jsonschema.Draft202012Validator(schema())
    found = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        found.extend(f"{path}: {message}" for message in described(error))
    return found


def described(error: jsonschema.ValidationError) -> list[str]:
    """The violation as a person fixing the file wants it: an unknown key by name, with the key it may have meant
    ('rule' -> 'rules'), rather than jsonschema's "does not match any of the regexes"."""
    schema_of = error.schema if isinstance(error.schema, dict) else {}
    if error.validator not in ("additionalProperties", "unevaluatedProperties") or not isinstance(error.instance, dict):
        return [error.message]
    known = list(schema_of.get("properties", {}))
    patterns = list(schema_of.get("patternProperties", {}))
    unknown = [key for key in error.instance if key not in known
               and not any(re.search(pattern, str(key)) for pattern in patterns)]
    if not unknown:
        return [error.message]
    free = " (free keys start with x-)" if "^x-" in patterns else ""
    out = []
    for key in unknown:
        near = difflib.get_close_matches(str(key), known, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else f"; known keys: {', '.join(sorted(known))}"
        out.append(f"unknown key '{key}'{hint}{free}")
    return out


# PyYAML's SafeLoader built on libyaml, in C (its wheels include it): the same documents, a ninth of the
# time (config/default.yaml and cards/: 73 ms against 8 ms per process start, on this project's host).
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(source: Any) -> Any:
    """yaml.safe_load, by SAFE_LOADER. libyaml reads UTF-8, which a str holding a lone surrogate (from a
    JSON escape) cannot become: such a text goes to the Python loader, which says why it refuses it.
    libyaml is a little more lenient: it takes a tab after `key:` (`a:\t1`) where the Python loader
    refuses the document; what both read, they read the same."""
    try:
        return yaml.load(source, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
    except UnicodeEncodeError:
        if not isinstance(source, str):
            raise
        return yaml.load(source, Loader=yaml.SafeLoader)  # noqa: S506 - a safe loader


def read(path: str | os.PathLike[str], seen: tuple[Path, ...] = ()) -> Any:
    """Parse a YAML file, and the files it `extends`; ConfigError for a missing or unreadable one."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = safe_load(fh)
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict) or not isinstance(data.get("extends"), str):
        return data
    base_path = (path.parent / data["extends"]).resolve()
    if base_path in seen:
        raise ConfigError(str(path), [f"extends: {data['extends']} extends this file again"])
    base = read(base_path, (*seen, path.resolve()))
    if not isinstance(base, dict):
        raise ConfigError(str(path), [f"extends: {data['extends']} is not a mapping"])
    return merge(base, {k: v for k, v in data.items() if k != "extends"})


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Override mappings key by key; any other value (lists included) replaces the base's."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def semantic_problems(data: Mapping[str, Any]) -> list[str]:
    """Cross-references the schema cannot express: profiles, and drugs named by catalog key or HCPCS code."""
    found = []
    drugs, payers = set(data["drugs"]), data["payers"]
    if payers["default"] not in payers["profiles"]:
        found.append(f"payers/default: '{payers['default']}' is not a profile")
    for name, profile in payers["profiles"].items():
        for field_name in ("covered_diagnoses", "frequency"):
            found += [f"payers/profiles/{name}/{field_name}/{k}: no such drug (a catalog key or a HCPCS code)"
                      for k in profile.get(field_name, {}) if not names_a_drug(k, drugs)]
        found += [f"payers/profiles/{name}/self_administered_drugs: no such drug '{k}' (a catalog key or a HCPCS code)"
                  for k in profile.get("self_administered_drugs", []) if not names_a_drug(k, drugs)]
    for key, drug in data["drugs"].items():
        codes = drug["hcpcs"] if isinstance(drug["hcpcs"], list) else [drug["hcpcs"]]
        if not any(re.fullmatch(r"[A-V]\d{4}|\d{4}[0-9FTU]", c) for c in codes):
            found.append(f"drugs/{key}/hcpcs: no code")
    return found


def names_a_drug(key: str, drugs: set[str]) -> bool:
    return key in drugs or bool(re.fullmatch(r"[A-V]\d{4}|\d{4}[0-9FTU]", key))


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and check a configuration file; None means $CDS_SERVICE_CONFIG or config/default.yaml."""
    if path is None:
        path = os.environ.get("CDS_SERVICE_CONFIG") or DEFAULT_CONFIG
    data = read(path)
    found = problems(data) or semantic_problems(data)
    if found:
        raise ConfigError(str(path), found)
    try:
        loaded = partb.load(quarters_dir(data))
    except StoredDataError as exc:
        raise ConfigError(str(path), [f"cms: {exc}"]) from None
    return build(data, str(path), loaded)


def quarters_dir(data: Mapping[str, Any]) -> Path:
    """Where imported CMS quarters are kept; a relative path is under the repository root."""
    return ROOT / data.get("cms", {}).get("quarters_dir", DEFAULT_QUARTERS_DIR)


def build(data: Mapping[str, Any], source: str, loaded: partb.PartB) -> Settings:
    """Turn a valid configuration document, and the CMS quarters loaded for it, into Settings."""
    server = data.get("server", {})
    fhir = data["fhir"]
    billing = data.get("billing", {})
    console = data.get("console", {})
    return Settings(
        source=source,
        raw=data,
        host=server.get("host", "127.0.0.1"),
        port=server.get("port", 8080),
        workers=server.get("workers", 2),
        threads=server.get("threads", 2),
        timeout_seconds=server.get("timeout_seconds", 30),
        max_body_bytes=server.get("max_body_bytes", 5 * 1024 * 1024),
        request_read_seconds=server.get("request_read_seconds", 30),
        trusted_proxies=server.get("trusted_proxies", 0),
        max_json_depth=server.get("max_json_depth", 100),
        close_hook=data.get("hooks", {}).get("close_hook", DEFAULT_CLOSE_HOOK),
        max_cards=data.get("hooks", {}).get("max_cards", 20),
        auth=AuthSettings(
            required=data["auth"]["required"],
            trusted_issuers=tuple(data["auth"].get("trusted_issuers", [])),
            clock_skew_seconds=data["auth"].get("clock_skew_seconds", 5),
            public_base_url=data["auth"].get("public_base_url", ""),
            config_dir=Path(source).resolve().parent,
        ),
        fhir=FhirSettings(
            allowed_servers=tuple(s.rstrip("/") for s in fhir["allowed_servers"]),
            deadline_seconds=fhir.get("deadline_seconds", 4.0),
            max_pages=fhir.get("max_pages", 5),
            max_response_bytes=fhir.get("max_response_bytes", 10 * 1024 * 1024),
        ),
        store_url=data["store"]["url"],
        cors_origins=tuple(data.get("cors", {}).get("origins", ["*"])),
        console_enabled=console.get("enabled", False),
        console_token=console.get("token", ""),
        console_login_failures=console.get("login_failures", 10),
        console_lockout_seconds=console.get("lockout_seconds", 900),
        reports_token=data.get("reports", {}).get("token", ""),
        metrics_token=data.get("metrics", {}).get("token", ""),
        facility_encounter_classes=frozenset(billing.get("facility_encounter_classes", [])),
        facility_pos_codes=frozenset(billing.get("facility_pos_codes", [])),
        catalog=DrugCatalog(data["drugs"], billing.get("noc_codes", [])),
        partb=loaded,
        quarters_dir=quarters_dir(data),
        code_classes=code_classes(billing),
        payers=PayerProfiles(data["payers"]),
        policy=BillingPolicy(
            admin_codes=billing.get("administration_codes", {}),
            medicare_vaccine_codes=billing.get("medicare_vaccine_codes", {}),
            em_needing_25=frozenset(billing.get("em_needing_modifier_25", [])),
            em_bundled=frozenset(billing.get("em_bundled_with_administration", [])),
            noc_codes=frozenset(billing.get("noc_codes", [])),
        ),
        rules={
            rule_id: RuleSettings(enabled=spec["enabled"], indicator=spec.get("indicator"))
            for rule_id, spec in data["rules"].items()
        },
    )
