"""The billing plan: the administration and drug lines each injection should carry.

Several rules need the same answer (what to create, what a captured line should have been, whether a
96372 line exists that day), so it is worked out once per visit, from facts and configuration only.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from msgspec.structs import replace

from cds_service.rules.model import (
    ADMIN_96372,
    CPT,
    ChargeLine,
    DrugClass,
    Injection,
    PlannedLines,
    RouteClass,
    Setting,
    Visit,
    code_system,
)

ANTINEOPLASTIC = {
    DrugClass.ANTINEOPLASTIC_HORMONAL: "antineoplastic_hormonal",
    DrugClass.ANTINEOPLASTIC_NON_HORMONAL: "antineoplastic_non_hormonal",
}


def prepare(visit: Visit) -> Visit:
    """Return the visit with its billing plan filled in."""
    return replace(visit, plan=plan(visit), prepared=True)


def billable(inj: Injection, visit: Visit) -> bool:
    """Completed, outside a facility, and not a drug the payer excludes as self-administered."""
    if not inj.completed or visit.setting is Setting.FACILITY:
        return False
    return not (inj.drug is not None and visit.payer is not None and visit.payer.self_administers(inj.drug))


def plan(visit: Visit) -> dict[str, PlannedLines]:
    """Plan every injection's lines, in order of administration, so sequence codes (96375, 90472) fall right."""
    out: dict[str, PlannedLines] = {}
    pushed_drugs: set[str | None] = set()
    vaccines = infusions = 0
    sc_im_per_day: dict[object, int] = {}
    has_infusion = any(i.route is RouteClass.IV_INFUSION and billable(i, visit) for i in visit.injections)
    ordered = sorted(visit.injections, key=lambda i: (i.at is None, instant(i.at), i.ref))
    for inj in ordered:
        if not billable(inj, visit):
            out[inj.ref] = PlannedLines()
            continue
        codes = visit.policy.admin_codes
        code: str | None = None
        modifiers: tuple[str, ...] = ()
        if inj.is_vaccine:
            code = vaccine_code(inj, visit, vaccines)
            if code not in visit.policy.medicare_vaccine_codes.values():  # G codes stand apart from 90471/2
                vaccines += 1
        elif inj.route.is_injection:
            drug_class = inj.drug.drug_class if inj.drug else DrugClass.OTHER
            code = codes.get(ANTINEOPLASTIC[drug_class]) if drug_class in ANTINEOPLASTIC else ADMIN_96372
            if code == ADMIN_96372:
                seen = sc_im_per_day.get(inj.date_of_service, 0)
                sc_im_per_day[inj.date_of_service] = seen + 1
                if seen and visit.payer is not None and visit.payer.multiple_injection_modifier:
                    modifiers = (visit.payer.multiple_injection_modifier,)
        elif inj.route is RouteClass.IV_PUSH:
            key = inj.drug.key if inj.drug else inj.ref
            if key not in pushed_drugs:  # a repeat push of the same drug is facility-only (96376)
                code = codes.get("iv_push_additional" if pushed_drugs or has_infusion else "iv_push")
            pushed_drugs.add(key)
        elif inj.route is RouteClass.IV_INFUSION:
            code = codes.get("iv_infusion") if infusions == 0 else None
            infusions += 1
        elif inj.route is RouteClass.INTRA_ARTERIAL:
            code = codes.get("intra_arterial")
        admin = None
        if code:
            admin = ChargeLine(code, code_system(code), Decimal(1), modifiers, inj.date_of_service, service=(inj.ref,))
        out[inj.ref] = PlannedLines(admin=admin, drug=drug_line(inj, visit))
    return out


def instant(at: dt.datetime | None) -> float:
    """Order administration times as instants, whatever their offsets."""
    if at is None:
        return 0.0
    return (at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)).timestamp()


def vaccine_code(inj: Injection, visit: Visit, earlier_vaccines: int) -> str | None:
    """G0008/G0009/G0010 for Medicare's covered vaccines, else 90471 then 90472 for each further one."""
    kind = inj.drug.vaccine_kind if inj.drug else None
    if visit.payer is not None and visit.payer.medicare_vaccine_codes and kind is not None:
        medicare_code = visit.policy.medicare_vaccine_codes.get(kind)
        if medicare_code is not None:
            return medicare_code
    return visit.policy.admin_codes.get("vaccine_additional" if earlier_vaccines else "vaccine")


def drug_line(inj: Injection, visit: Visit) -> ChargeLine | None:
    """The drug's line with its units; none for a patient-supplied drug or an unknown dose."""
    if inj.drug is None or inj.patient_supplied:
        return None
    units = inj.drug_units
    if units is None:
        return None
    modifiers: tuple[str, ...] = ()
    if waste_modifier_applies(inj, visit) and inj.container == "single-dose":
        modifiers = ("JZ",)  # nothing discarded is documented; a JW line needs the discarded amount
    return ChargeLine(
        inj.drug.hcpcs, inj.drug.code_system, Decimal(units), modifiers, inj.date_of_service, service=(inj.ref,)
    )


def waste_modifier_applies(inj: Injection, visit: Visit) -> bool:
    """JZ/JW: the payer asks for them, and the drug is a separately payable drug, not a vaccine."""
    return (
        visit.payer is not None
        and visit.payer.waste_modifiers
        and inj.drug is not None
        and inj.drug.drug_class is not DrugClass.VACCINE
        and inj.drug.code_system != CPT
    )


def gives(inj: Injection, charge: ChargeLine) -> bool:
    """The admin gives the drug of a captured drug line: its code, or, for a code not in force on the date,
    one that replaces it or another of the drug's codes. An admin whose drug is unknown may give any."""
    if inj.drug is None:
        return True
    if charge.code == inj.drug.hcpcs:
        return True
    return charge.stale is not None and (inj.drug.hcpcs in charge.current or charge.code in inj.drug.former)


def linked(charge: ChargeLine, inj: Injection, visit: Visit) -> bool:
    """A captured line rests on this admin: it references it, or references none and the admin is the only
    completed one of its date."""
    if charge.service:
        return inj.ref in charge.service
    same_day = [i for i in visit.injections if i.completed and i.date_of_service == inj.date_of_service]
    return len(same_day) == 1 and charge.rests_on(inj)


def stale_lines(inj: Injection, visit: Visit) -> list[ChargeLine]:
    """This admin's captured drug lines under a code not in force on their date (code-not-current's): by
    reference, or, referencing none, the line of the one admin of its date whose drug it bills (J1040 beside
    a B12 shot and a Depo-Medrol injection is the Depo-Medrol's)."""
    out = []
    for charge in visit.charges:
        if not (charge.stale and charge.id):
            continue
        if charge.service:
            if inj.ref in charge.service and gives(inj, charge):
                out.append(charge)
            continue
        same_day = [i for i in visit.injections if i.completed and charge.rests_on(i)]
        givers = [i for i in same_day if i.drug is not None and gives(i, charge)]
        if len({i.drug.key for i in givers if i.drug is not None}) == 1:  # doses of one drug: the first's line
            givers = sorted(givers, key=lambda i: (i.at is None, instant(i.at), i.ref))[:1]
        givers = givers or [i for i in same_day if i.drug is None]
        if [i.ref for i in givers] == [inj.ref]:
            out.append(charge)
    return out
