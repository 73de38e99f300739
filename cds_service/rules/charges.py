"""Charges already captured on the encounter: E/M beside an injection, wrong codes or units, no admin behind."""

from __future__ import annotations

from collections.abc import Iterator

from msgspec.structs import replace

from cds_service.rules.model import ChargeLine, Finding, Injection, PlannedLines, Setting, Visit
from cds_service.rules.plan import gives, linked, stale_lines


def administration_lines(visit: Visit) -> list[ChargeLine]:
    """Drug administration lines of the encounter: captured, and suggested in this same response."""
    codes = visit.policy.administration_codes
    planned = [p.admin for p in visit.plan.values() if p.admin is not None]
    return [c for c in visit.charges if c.code in codes] + planned


def same_day_em_modifier_25(visit: Visit) -> Iterator[Finding]:
    """An E/M beside a drug administration on the same day needs modifier 25 (Noridian E/M and drug admin)."""
    admin_lines = administration_lines(visit)
    for charge in visit.charges:
        if charge.code not in visit.policy.em_needing_25 or "25" in charge.modifiers or not charge.id:
            continue
        beside = [ln for ln in admin_lines if charge.date_of_service in (None, ln.date_of_service)]
        if beside:
            admins = tuple(dict.fromkeys(ref for ln in beside for ref in ln.service))
            fixed = replace(charge, modifiers=(*charge.modifiers, "25"), service=charge.service or admins)
            yield Finding(updates=(fixed,), detail={"code": charge.code, "beside": sorted({ln.code for ln in beside})})


def em_99211_bundled(visit: Visit) -> Iterator[Finding]:
    """CMS does not pay 99211 with a drug administration code, with or without 25 (CR 3631)."""
    days = {line.date_of_service for line in administration_lines(visit)}
    for charge in visit.charges:
        if charge.code in visit.policy.em_bundled and charge.id:
            if charge.date_of_service in days or (charge.date_of_service is None and days):
                yield Finding(deletes=(charge.id,), detail={"code": charge.code})


def facility_setting(visit: Visit) -> Iterator[Finding]:
    """In a facility the physician does not report drug administration codes (CPT; POS 19-32)."""
    if visit.setting is Setting.FACILITY and any(inj.completed for inj in visit.injections):
        yield Finding()


def linked_charges(inj: Injection, visit: Visit, codes: frozenset[str]) -> list[ChargeLine]:
    """Captured lines with these codes resting on this admin: by reference, or alone on its date."""
    return [c for c in visit.charges if c.code in codes and c.id and linked(c, inj, visit)]


def charge_code_mismatch(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """A captured administration code contradicts the chart (96372 for an IV push, 96372 for a vaccine...)."""
    wanted = visit.plan.get(inj.ref, PlannedLines()).admin
    if not inj.completed or visit.setting is Setting.FACILITY:
        return
    for charge in linked_charges(inj, visit, visit.policy.administration_codes):
        if inj.drug is None and wanted is not None and by_class(charge.code, visit) and by_class(wanted.code, visit):
            continue  # 96401 or 90471 against 96372: the drug's class decides, and the drug is not known
        if wanted is None:  # no administration code applies (oral, a repeat push of one drug): remove it
            yield Finding(deletes=(charge.id or "",), detail={"captured": charge.code, "code": None})
        elif charge.code != wanted.code:
            fixed = replace(charge, code=wanted.code, system=wanted.system, units=wanted.units,
                            service=charge.service or (inj.ref,))
            yield Finding(updates=(fixed,), detail={"captured": charge.code, "code": wanted.code})


def charge_units_mismatch(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """The drug line's units differ from the units the documented dose gives (CERT: dose differs from billed)."""
    wanted = visit.plan.get(inj.ref, PlannedLines()).drug
    if wanted is None:
        return
    for charge in linked_charges(inj, visit, frozenset({wanted.code})):
        if charge.units != wanted.units:
            yield Finding(updates=(replace(charge, units=wanted.units, service=charge.service or (inj.ref,)),),
                          detail={"captured": charge.units, "units": wanted.units, "code": wanted.code})


def by_class(code: str, visit: Visit) -> bool:
    """An SC/IM administration code that the drug's class picks: 96372, chemotherapy, a vaccine's."""
    codes = visit.policy.admin_codes
    return code == "96372" or code in visit.policy.medicare_vaccine_codes.values() or code in (
        codes.get("antineoplastic_hormonal"), codes.get("antineoplastic_non_hormonal"), codes.get("vaccine"),
        codes.get("vaccine_additional"))


def charge_unsupported(visit: Visit) -> Iterator[Finding]:
    """A 96372, administration or drug line with no completed administration behind it: delete it."""
    codes = visit.policy.administration_codes
    given = [inj for inj in visit.injections if inj.completed]
    for charge in visit.charges:
        if not (charge.code in codes or charge.drug) or not charge.id:
            continue
        behind = [inj for inj in given if charge.rests_on(inj) and (not charge.drug or gives(inj, charge))]
        if not behind:
            yield Finding(deletes=(charge.id,), detail={"code": charge.code, "service": list(charge.service)})


def code_not_current(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """A captured drug line under a code CMS's Part B files do not list for its date (J1040 in 2025, dropped
    in 2024 Q2; J1010 in 2024 Q1, listed from Q2): the code in force for the drug then, with its units from the
    documented dose. A second line of the same drug, or one beside the code in force, is a duplicate: removed."""
    if not inj.completed or visit.setting is Setting.FACILITY:
        return
    wanted = visit.plan.get(inj.ref, PlannedLines()).drug
    taken = wanted is not None and any(
        c.code == wanted.code and not c.stale and linked(c, inj, visit) for c in visit.charges)
    for charge in stale_lines(inj, visit):
        detail = {"captured": charge.code, "code": wanted.code if wanted else None,
                  "units": wanted.units if wanted else None, "successors": list(charge.current),
                  "why": charge.stale, "quarter": charge.quarter, "state": ""}
        if inj.drug is None:
            yield Finding(detail=detail | {"state": "unknown-drug"})
        elif wanted is None:
            yield Finding(detail=detail | {"state": "no-dose"})
        elif wanted.code == charge.code:  # the drug's own code, and CMS lists nothing in its place
            yield Finding(detail=detail | {"state": "no-successor"})
        elif taken:
            yield Finding(deletes=(charge.id or "",), detail=detail | {"state": "duplicate"})
        else:
            taken = True
            yield Finding(updates=(replace(charge, code=wanted.code, system=wanted.system, units=wanted.units,
                                           service=charge.service or (inj.ref,)),),
                          detail=detail | {"state": "replace"})
