"""The rule registry, keyed by the rule ids of domain/RULES.md, and the engine that runs it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Literal

from msgspec.structs import replace

from cds_service.rules import billing, charges, coverage, documentation, quality
from cds_service.rules.model import Finding, Injection, Visit
from cds_service.rules.plan import prepare

__all__ = ["GROUPS", "RULES", "Rule", "evaluate", "prepare"]

Check = Callable[..., Iterator[Finding]]


@dataclass(frozen=True)
class Rule:
    """One rule of domain/RULES.md: its check, the per-call option group that switches it off
    (protocol.OPTION_GROUPS), and what it looks at: each injection, check(inj, visit), or the visit as a whole,
    check(visit)."""

    check: Check
    group: Literal["billing", "documentation", "coverage", "charges", "data-quality"]
    scope: Literal["injection", "visit"]


# The one table of rules. Adding a rule: its check here, its card text (cards/<id>.yaml), its entry in
# config/default.yaml, and its test. The config schema's rule ids, the option groups and the tests' list come
# from this table. Order is evaluation order: injection rules (per injection), then visit rules.
RULES: dict[str, Rule] = {
    "admin-96372": Rule(billing.admin_96372, "billing", "injection"),
    "admin-code-alternative": Rule(billing.admin_code_alternative, "billing", "injection"),
    "drug-waste-modifier": Rule(billing.drug_waste_modifier, "billing", "injection"),
    "status-not-completed": Rule(documentation.status_not_completed, "documentation", "injection"),
    "route-missing": Rule(documentation.route_missing, "documentation", "injection"),
    "route-uncoded": Rule(documentation.route_uncoded, "documentation", "injection"),
    "route-contrary-to-label": Rule(documentation.route_contrary_to_label, "documentation", "injection"),
    "dose-missing": Rule(documentation.dose_missing, "documentation", "injection"),
    "dose-above-label": Rule(documentation.dose_above_label, "documentation", "injection"),
    "drug-uncoded": Rule(documentation.drug_uncoded, "documentation", "injection"),
    "drug-unknown": Rule(documentation.drug_unknown, "documentation", "injection"),
    "admin-time-missing": Rule(documentation.admin_time_missing, "documentation", "injection"),
    "dos-mismatch": Rule(documentation.dos_mismatch, "documentation", "injection"),
    "performer-missing": Rule(documentation.performer_missing, "documentation", "injection"),
    "patient-supplied-drug": Rule(documentation.patient_supplied_drug, "documentation", "injection"),
    "noc-drug-code": Rule(documentation.noc_drug_code, "documentation", "injection"),
    "compounded-drug": Rule(documentation.compounded_drug, "documentation", "injection"),
    "self-administered-drug": Rule(documentation.self_administered_drug, "documentation", "injection"),
    "diagnosis-missing": Rule(coverage.diagnosis_missing, "coverage", "injection"),
    "diagnosis-not-covered": Rule(coverage.diagnosis_not_covered, "coverage", "injection"),
    "frequency-exceeded": Rule(coverage.frequency_exceeded, "coverage", "injection"),
    "charge-code-mismatch": Rule(charges.charge_code_mismatch, "charges", "injection"),
    "charge-units-mismatch": Rule(charges.charge_units_mismatch, "charges", "injection"),
    "code-not-current": Rule(charges.code_not_current, "charges", "injection"),
    "multiple-injections": Rule(billing.multiple_injections, "billing", "visit"),
    "same-day-em-modifier-25": Rule(charges.same_day_em_modifier_25, "charges", "visit"),
    "em-99211-bundled": Rule(charges.em_99211_bundled, "charges", "visit"),
    "facility-setting": Rule(charges.facility_setting, "charges", "visit"),
    "charge-unsupported": Rule(charges.charge_unsupported, "charges", "visit"),
    "invalid-resource": Rule(quality.invalid_resource, "data-quality", "visit"),
}
INJECTION_RULES = {rule_id: rule for rule_id, rule in RULES.items() if rule.scope == "injection"}
VISIT_RULES = {rule_id: rule for rule_id, rule in RULES.items() if rule.scope == "visit"}

# Rule groups a caller may switch off per call (see protocol: configuration options).
GROUPS: dict[str, frozenset[str]] = {
    group: frozenset(rule_id for rule_id, rule in RULES.items() if rule.group == group)
    for group in dict.fromkeys(rule.group for rule in RULES.values())
}


def evaluate(visit: Visit, enabled: Collection[str]) -> Iterator[Finding]:
    """Run every enabled rule (by id) on a visit, prepared first unless it is (service.evaluate prepares it once)."""
    if not visit.prepared:
        visit = prepare(visit)
    for inj in visit.injections:
        for rule_id, rule in INJECTION_RULES.items():
            if rule_id in enabled:
                for finding in rule.check(inj, visit):
                    yield _label(finding, rule_id, inj)
    for rule_id, rule in VISIT_RULES.items():
        if rule_id in enabled:
            for finding in rule.check(visit):
                yield replace(finding, rule=rule_id)


def _label(finding: Finding, rule_id: str, inj: Injection) -> Finding:
    return replace(finding, rule=rule_id, subject=finding.subject or inj.ref)
