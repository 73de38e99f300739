"""What to bill: the administration code and the drug line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal

from cds_service.rules.model import (
    ADMIN_96372,
    CPT,
    HCPCS,
    ChargeLine,
    DrugClass,
    Finding,
    Injection,
    Setting,
    Visit,
)

NOT_96372_CLASSES = frozenset(
    {DrugClass.VACCINE, DrugClass.ANTINEOPLASTIC_HORMONAL, DrugClass.ANTINEOPLASTIC_NON_HORMONAL}
)


def admin_96372(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """Suggest 96372 and the drug line for a completed SC/IM injection (CPT 96372; HCPCS "up to" units)."""
    if not inj.completed or not inj.route.is_injection or visit.setting is Setting.FACILITY:
        return
    if inj.drug is not None and inj.drug.drug_class in NOT_96372_CLASSES:
        return
    wanted = [ChargeLine(ADMIN_96372, CPT, Decimal(1), date_of_service=inj.date_of_service, service=(inj.ref,))]
    units = inj.drug_units
    if inj.drug is not None and units is not None:
        wanted.append(
            ChargeLine(inj.drug.hcpcs, HCPCS, Decimal(units), date_of_service=inj.date_of_service, service=(inj.ref,))
        )
    missing = tuple(line for line in wanted if not is_captured(line, inj, visit.charges))
    if missing:
        yield Finding(subject=inj.ref, creates=missing, detail={"route": inj.route.value, "units": units})


def is_captured(line: ChargeLine, inj: Injection, charges: Iterable[ChargeLine]) -> bool:
    """A captured charge with the same code that rests on this admin, or on no admin but the same date."""
    for charge in charges:
        if charge.code != line.code:
            continue
        if inj.ref in charge.service:
            return True
        if not charge.service and charge.date_of_service in (None, inj.date_of_service):
            return True
    return False
