"""The rule registry, keyed by the rule ids of domain/RULES.md, and the engine that runs it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from msgspec.structs import replace

from cds_service.rules import billing, charges, coverage, documentation, quality
from cds_service.rules.model import Finding, Injection, Visit
from cds_service.rules.plan import prepare

__all__ = ["GROUPS", "RULES", "evaluate", "prepare"]

InjectionRule = Callable[..., Iterator[Finding]]
VisitRule = Callable[..., Iterator[Finding]]

# Rules about one injection: fn(inj, visit, **params).
INJECTION_RULES: dict[str, InjectionRule] = {
    "admin-96372": billing.admin_96372,
    "admin-code-alternative": billing.admin_code_alternative,
    "drug-waste-modifier": billing.drug_waste_modifier,
    "status-not-completed": documentation.status_not_completed,
    "route-missing": documentation.route_missing,
    "route-uncoded": documentation.route_uncoded,
    "route-contrary-to-label": documentation.route_contrary_to_label,
    "dose-missing": documentation.dose_missing,
    "dose-above-label": documentation.dose_above_label,
    "drug-uncoded": documentation.drug_uncoded,
    "drug-unknown": documentation.drug_unknown,
    "admin-time-missing": documentation.admin_time_missing,
    "dos-mismatch": documentation.dos_mismatch,
    "performer-missing": documentation.performer_missing,
    "patient-supplied-drug": documentation.patient_supplied_drug,
    "noc-drug-code": documentation.noc_drug_code,
    "compounded-drug": documentation.compounded_drug,
    "self-administered-drug": documentation.self_administered_drug,
    "diagnosis-missing": coverage.diagnosis_missing,
    "diagnosis-not-covered": coverage.diagnosis_not_covered,
    "frequency-exceeded": coverage.frequency_exceeded,
    "charge-code-mismatch": charges.charge_code_mismatch,
    "charge-units-mismatch": charges.charge_units_mismatch,
    "code-not-current": charges.code_not_current,
}

# Rules about the visit as a whole: fn(visit, **params).
VISIT_RULES: dict[str, VisitRule] = {
    "multiple-injections": billing.multiple_injections,
    "same-day-em-modifier-25": charges.same_day_em_modifier_25,
    "em-99211-bundled": charges.em_99211_bundled,
    "facility-setting": charges.facility_setting,
    "charge-unsupported": charges.charge_unsupported,
    "invalid-resource": quality.invalid_resource,
}

RULES: dict[str, Callable[..., Iterator[Finding]]] = {**INJECTION_RULES, **VISIT_RULES}

# Rule groups a caller may switch off per call (see protocol: configuration options).
GROUPS: dict[str, frozenset[str]] = {
    "billing": frozenset({"admin-96372", "admin-code-alternative", "multiple-injections", "drug-waste-modifier"}),
    "documentation": frozenset({
        "route-missing", "route-uncoded", "route-contrary-to-label", "dose-missing", "dose-above-label",
        "drug-uncoded", "admin-time-missing", "dos-mismatch", "performer-missing", "status-not-completed",
        "patient-supplied-drug", "noc-drug-code", "compounded-drug", "self-administered-drug", "drug-unknown",
    }),
    "coverage": frozenset({"diagnosis-missing", "diagnosis-not-covered", "frequency-exceeded"}),
    "charges": frozenset({
        "same-day-em-modifier-25", "em-99211-bundled", "facility-setting", "charge-code-mismatch",
        "charge-units-mismatch", "charge-unsupported", "code-not-current",
    }),
    "data-quality": frozenset({"invalid-resource"}),
}


def evaluate(visit: Visit, enabled: Mapping[str, Mapping[str, Any]]) -> Iterator[Finding]:
    """Run every enabled rule on a prepared visit; `enabled` maps a rule id to its keyword parameters."""
    if visit.injections and not visit.plan:
        visit = prepare(visit)
    for inj in visit.injections:
        for rule_id, fn in INJECTION_RULES.items():
            if rule_id in enabled:
                for finding in fn(inj, visit, **enabled[rule_id]):
                    yield _label(finding, rule_id, inj)
    for rule_id, visit_fn in VISIT_RULES.items():
        if rule_id in enabled:
            for finding in visit_fn(visit, **enabled[rule_id]):
                yield replace(finding, rule=rule_id)


def _label(finding: Finding, rule_id: str, inj: Injection) -> Finding:
    return replace(finding, rule=rule_id, subject=finding.subject or inj.ref)
