"""The CDS Hooks card rules: a port of check_shape from shared/tools/check_scenarios.py (CONTRACT section 5).

Differences from the acceptance tool, for tests that build visits by hand: `require_context` (a visit with no
encounter has no ChargeItem.context) and `require_occurrence` (a line with no date of service has no
occurrenceDateTime); both default to the tool's strictness. Create and update actions must carry ChargeItems.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

from cds_service.rules import RULES

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
RULE_SYSTEM = "https://injection-billing.org/fhir/CodeSystem/billing-rule"

# Every rule id, from the service's rule table (tests/unit/test_rule_table.py holds the table to shared/domain/
# RULES.md), and the documentation-gap rules whose cards must be warnings with override reasons (CONTRACT
# section 5).
RULE_IDS = frozenset(RULES)
DOC_GAP_WARNINGS = frozenset({
    "route-missing", "route-uncoded", "route-contrary-to-label", "dose-missing", "dose-above-label",
    "drug-uncoded", "admin-time-missing", "dos-mismatch", "diagnosis-missing", "diagnosis-not-covered",
    "frequency-exceeded", "performer-missing", "status-not-completed", "noc-drug-code",
    "compounded-drug", "self-administered-drug", "drug-unknown",
})


def empty_paths(node: Any, path: str = "$") -> Iterator[str]:
    """Paths of null, "", [] and {} values (CDS Hooks 2.0: JSON elements SHALL NOT be null or empty)."""
    if node is None or node == "" or node == [] or node == {}:
        yield path
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield from empty_paths(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from empty_paths(value, f"{path}[{i}]")


def is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def is_positive_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


def check_chargeitem(
    res: dict[str, Any], where: str, action_type: str, hook_kind: str, captured_ids: Iterable[str],
    *, require_context: bool, require_occurrence: bool,
) -> list[str]:
    errs = []
    want = "planned" if hook_kind in ("sign", "order-sign") else "billable"
    if res.get("status") != want:
        errs.append(f"{where}: ChargeItem.status {res.get('status')!r}, want {want!r}")
    codings = (res.get("code") or {}).get("coding") or []
    if not codings or not isinstance(codings[0], dict) or not is_text(codings[0].get("code")):
        errs.append(f"{where}: ChargeItem.code.coding[0].code missing")
    elif codings[0].get("system") not in (CPT, HCPCS):
        errs.append(f"{where}: ChargeItem code system {codings[0].get('system')!r} is neither CPT nor HCPCS")
    fields = ("subject", "context") if require_context else ("subject",)
    for field in fields:
        if not is_text((res.get(field) or {}).get("reference")):
            errs.append(f"{where}: ChargeItem.{field}.reference missing")
    if require_occurrence and not is_text(res.get("occurrenceDateTime")):
        errs.append(f"{where}: ChargeItem.occurrenceDateTime missing")
    service = res.get("service") or []
    if action_type == "create" and not service:
        errs.append(f"{where}: ChargeItem.service must reference the administration or order")
    if not all(isinstance(s, dict) and is_text(s.get("reference")) for s in service):
        errs.append(f"{where}: ChargeItem.service entries need a reference")
    quantity = res.get("quantity")
    if not isinstance(quantity, dict) or not is_positive_number(quantity.get("value")):
        errs.append(f"{where}: ChargeItem.quantity.value {quantity!r} is not a positive number")
    for ext in res.get("extension") or []:
        if str(ext.get("url", "")).endswith("/procedure-modifier") and not is_text(
            (ext.get("valueCoding") or {}).get("code")
        ):
            errs.append(f"{where}: procedure-modifier extension without valueCoding.code")
    if action_type == "update":
        if not is_text(res.get("id")):
            errs.append(f"{where}: update of a ChargeItem without its id")
        elif res["id"] not in set(captured_ids):
            errs.append(f"{where}: update of ChargeItem/{res['id']}, which is not among the captured charges")
    return errs


def check_card(
    card: Any, w: str, hook_kind: str, captured_ids: Iterable[str],
    *, require_context: bool = True, require_occurrence: bool = True,
) -> list[str]:
    errs: list[str] = []
    if not isinstance(card, dict):
        return [f"{w} is not an object"]
    if not is_text(card.get("uuid")):
        errs.append(f"{w}: no uuid")
    summary = card.get("summary")
    if not is_text(summary):
        errs.append(f"{w}: no summary")
    elif len(summary) >= 140:
        errs.append(f"{w}: summary is {len(summary)} characters (must be < 140)")
    if "detail" in card and not isinstance(card["detail"], str):
        errs.append(f"{w}: detail is not a string")
    indicator = card.get("indicator")
    if indicator not in ("info", "warning", "critical"):
        errs.append(f"{w}: indicator {indicator!r}")
    source = card.get("source")
    topic_code = None
    if not isinstance(source, dict) or not is_text(source.get("label")):
        errs.append(f"{w}: source.label missing")
    else:
        topic = source.get("topic")
        if not isinstance(topic, dict):
            errs.append(f"{w}: source.topic missing")
        else:
            topic_code = topic.get("code")
            for field in ("system", "code", "display"):
                if not is_text(topic.get(field)):
                    errs.append(f"{w}: source.topic.{field} missing")
            if topic.get("system") != RULE_SYSTEM:
                errs.append(f"{w}: source.topic.system {topic.get('system')!r} is not the rule code system")
            if topic_code is not None and topic_code not in RULE_IDS:
                errs.append(f"{w}: source.topic.code {topic_code!r} is not a rule id of RULES.md")
    suggestions = card.get("suggestions")
    if suggestions is not None:
        if not isinstance(suggestions, list):
            errs.append(f"{w}: suggestions is not an array")
            suggestions = []
        if suggestions and card.get("selectionBehavior") not in ("at-most-one", "any"):
            errs.append(f"{w}: selectionBehavior {card.get('selectionBehavior')!r} with suggestions present")
        for j, sug in enumerate(suggestions):
            sw = f"{w}.suggestions[{j}]"
            if not isinstance(sug, dict) or not is_text(sug.get("label")):
                errs.append(f"{sw}: no label")
                continue
            if "isRecommended" in sug and not isinstance(sug["isRecommended"], bool):
                errs.append(f"{sw}: isRecommended is not a boolean")
            for k, act in enumerate(sug.get("actions") or []):
                aw = f"{sw}.actions[{k}]"
                if not isinstance(act, dict):
                    errs.append(f"{aw} is not an object")
                    continue
                atype = act.get("type")
                if atype not in ("create", "update", "delete"):
                    errs.append(f"{aw}: type {atype!r}")
                if not is_text(act.get("description")):
                    errs.append(f"{aw}: no description")
                res = act.get("resource")
                if atype in ("create", "update"):
                    if not isinstance(res, dict) or res.get("resourceType") != "ChargeItem":
                        errs.append(f"{aw}: {atype} without a ChargeItem")
                    else:
                        errs += check_chargeitem(res, aw, atype, hook_kind, captured_ids,
                                                 require_context=require_context,
                                                 require_occurrence=require_occurrence)
                elif atype == "delete" and not is_text(act.get("resourceId")):
                    errs.append(f"{aw}: delete without resourceId")
    reasons = card.get("overrideReasons")
    if reasons is not None:
        if not isinstance(reasons, list):
            errs.append(f"{w}: overrideReasons is not an array")
        else:
            for j, reason in enumerate(reasons):
                if not isinstance(reason, dict) or not is_text(reason.get("display")):
                    errs.append(f"{w}.overrideReasons[{j}]: no display")
    if topic_code in DOC_GAP_WARNINGS:
        if indicator != "warning":
            errs.append(f"{w}: documentation-gap card {topic_code} has indicator {indicator!r}, want 'warning'")
        if not reasons:
            errs.append(f"{w}: documentation-gap card {topic_code} lists no overrideReasons")
    for j, link in enumerate(card.get("links") or []):
        if not isinstance(link, dict) or not is_text(link.get("label")) or not is_text(link.get("url")) \
                or link.get("type") != "absolute":
            errs.append(f"{w}.links[{j}]: needs label, url and type absolute")
    for p in empty_paths(card, w):
        errs.append(f"null or empty value at {p}")
    return errs


def check_shape(
    resp: Any, hook_kind: str, captured_ids: Iterable[str] = (),
    *, require_context: bool = True, require_occurrence: bool = True,
) -> list[str]:
    """Every violation of the card rules in one response; hook_kind is "order-sign" (or "sign") or "encounter"."""
    if not isinstance(resp, dict) or not isinstance(resp.get("cards"), list):
        return ["response is not an object with a cards array"]
    errs = []
    try:
        json.dumps(resp, allow_nan=False)
    except (TypeError, ValueError) as exc:
        errs.append(f"response is not plain JSON: {exc}")
    for key, value in resp.items():
        if key != "cards":
            errs += [f"null or empty value at {p}" for p in empty_paths(value, f"$.{key}")]
    ids = set(captured_ids)
    for i, card in enumerate(resp["cards"]):
        errs += check_card(card, f"cards[{i}]", hook_kind, ids,
                           require_context=require_context, require_occurrence=require_occurrence)
    return errs
