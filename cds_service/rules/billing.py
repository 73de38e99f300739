"""What to bill: the administration code, the drug line, several injections, and drug waste."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from msgspec.structs import replace

from cds_service.rules.model import ADMIN_96372, ChargeLine, Finding, Injection, PlannedLines, RouteClass, Visit
from cds_service.rules.plan import stale_lines, waste_modifier_applies

WASTE_MODIFIERS = frozenset({"JZ", "JW"})


def admin_96372(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """Suggest 96372 and the drug line for a completed SC/IM injection (CPT 96372; HCPCS "up to" units)."""
    lines = visit.plan.get(inj.ref, PlannedLines())
    if lines.admin is None or lines.admin.code != ADMIN_96372:
        return
    missing = uncaptured(lines, inj, visit)
    if missing:
        yield Finding(creates=missing, detail={"code": ADMIN_96372})


def admin_code_alternative(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """Suggest the right administration code when 96372 does not apply (CPT 96365-96402, 90471, G0008); for
    another documented route (intra-articular, intradermal...), the drug line, the procedure being coded apart."""
    lines = visit.plan.get(inj.ref, PlannedLines())
    if lines.admin is not None and lines.admin.code == ADMIN_96372:
        return
    if lines.admin is None and (lines.drug is None or inj.route is not RouteClass.OTHER):
        return
    missing = uncaptured(lines, inj, visit)
    if missing:
        yield Finding(creates=missing, detail={"code": lines.admin.code if lines.admin else None})


def uncaptured(lines: PlannedLines, inj: Injection, visit: Visit) -> tuple[ChargeLine, ...]:
    """Planned lines not yet charged. A wrong administration code already charged is charge-code-mismatch's."""
    out = []
    admin_codes = visit.policy.administration_codes
    if lines.admin is not None and not any(
        c.code in admin_codes and c.rests_on(inj) for c in visit.charges
    ):
        out.append(lines.admin)
    if lines.drug is not None and not captured(lines.drug.code, inj, visit.charges) and not stale_lines(inj, visit):
        out.append(lines.drug)
    return tuple(out)


def captured(code: str, inj: Injection, charges: Iterable[ChargeLine]) -> ChargeLine | None:
    return next((c for c in charges if c.code == code and c.rests_on(inj)), None)



def multiple_injections(visit: Visit) -> Iterator[Finding]:
    """More than one SC/IM injection on a date: one 96372 per injection, with 59/XU where the payer asks."""
    by_day: dict[object, list[Injection]] = defaultdict(list)
    for inj in visit.injections:
        admin = visit.plan.get(inj.ref, PlannedLines()).admin
        if admin is not None and admin.code == ADMIN_96372:
            by_day[inj.date_of_service].append(inj)
    modifier = visit.payer.multiple_injection_modifier if visit.payer else None
    for day, injections in by_day.items():
        if len(injections) < 2:
            continue
        updates = []
        for inj in injections:
            wanted = visit.plan[inj.ref].admin
            line = captured(ADMIN_96372, inj, visit.charges)
            if wanted and line and line.id and set(wanted.modifiers) - set(line.modifiers):
                updates.append(replace(line, modifiers=line.modifiers + wanted.modifiers,
                                       service=line.service or (inj.ref,)))
        yield Finding(
            updates=tuple(updates),
            detail={"count": len(injections), "date": day, "modifier": modifier,
                    "admins": [i.ref for i in injections]},
        )


def drug_waste_modifier(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """Medicare Part B: JZ or JW on a single-dose container drug (Claims Processing Manual ch. 17 s40)."""
    lines = visit.plan.get(inj.ref, PlannedLines())
    if lines.drug is None or not waste_modifier_applies(inj, visit) or inj.container == "multi-dose":
        return
    line = captured(lines.drug.code, inj, visit.charges)
    if inj.container is None:
        yield Finding(detail={"container": "unknown", "code": lines.drug.code, "ndc": inj.ndc})
    elif line is not None and line.id and not WASTE_MODIFIERS & set(line.modifiers):
        update = replace(line, modifiers=(*line.modifiers, "JZ"), service=line.service or (inj.ref,))
        yield Finding(updates=(update,), detail={"container": "single-dose", "code": lines.drug.code})
