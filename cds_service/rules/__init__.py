"""The rule registry, keyed by the rule ids of domain/RULES.md, and the engine that runs it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from cds_service.rules import billing, quality
from cds_service.rules.model import Finding, Injection, Visit

InjectionRule = Callable[..., Iterator[Finding]]
VisitRule = Callable[..., Iterator[Finding]]

# Rules about one injection: fn(inj, visit, **params).
INJECTION_RULES: dict[str, InjectionRule] = {
    "admin-96372": billing.admin_96372,
}

# Rules about the visit as a whole: fn(visit, **params).
VISIT_RULES: dict[str, VisitRule] = {
    "invalid-resource": quality.invalid_resource,
}

RULES: dict[str, Callable[..., Iterator[Finding]]] = {**INJECTION_RULES, **VISIT_RULES}


def evaluate(visit: Visit, enabled: Mapping[str, Mapping[str, Any]]) -> Iterator[Finding]:
    """Run every enabled rule; `enabled` maps a rule id to its keyword parameters."""
    for rule_id, fn in INJECTION_RULES.items():
        if rule_id in enabled:
            for inj in visit.injections:
                for finding in fn(inj, visit, **enabled[rule_id]):
                    yield _label(finding, rule_id, inj)
    for rule_id, visit_fn in VISIT_RULES.items():
        if rule_id in enabled:
            for finding in visit_fn(visit, **enabled[rule_id]):
                yield replace(finding, rule=rule_id)


def _label(finding: Finding, rule_id: str, inj: Injection) -> Finding:
    return replace(finding, rule=rule_id, subject=finding.subject or inj.ref)
