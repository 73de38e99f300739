"""Documentation gaps on one admin or order: drug, route, dose, time, date, performer, status."""

from __future__ import annotations

from collections.abc import Iterator

from msgspec.structs import replace

from cds_service.rules.model import DrugClass, Finding, Injection, PlannedLines, RouteClass, Visit
from cds_service.rules.plan import plan

NOT_COMPLETED = frozenset({"in-progress", "on-hold", "not-done", "stopped", "unknown"})


def route_missing(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """No route coded or written: 96372 needs a documented SC or IM route (BILLING-FACTS, seed article). For a
    drug identified, the card says what the same injection would bill charted IM: the billing plan's own lines."""
    if inj.completed and inj.route is RouteClass.UNKNOWN:
        if inj.drug is None:
            yield Finding()
            return
        allowed = inj.drug.allowed_routes
        route = next((r for r in (RouteClass.IM, RouteClass.SC) if not allowed or r in allowed), None)
        if route is None:  # a drug whose label allows neither: nothing to say it would bill
            yield Finding()
            return
        charted = replace(inj, route=route, route_coded=True)
        lines = plan(replace(visit, injections=(charted,))).get(charted.ref, PlannedLines())
        yield Finding(detail={
            "if_route": route.value,
            "if_im": [{"code": line.code, "units": line.units} for line in (lines.admin, lines.drug) if line],
            "if_im_dose_needed": lines.drug is None and not inj.patient_supplied,
        })


def route_uncoded(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """The route is known only from free text, which a payer's edit cannot read."""
    if inj.completed and inj.route is not RouteClass.UNKNOWN and not inj.route_coded:
        yield Finding(detail={"route": inj.route.value})


def route_contrary_to_label(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """The documented route is not one the drug's label allows (cyanocobalamin: IM or deep SC only)."""
    if not inj.completed or inj.drug is None or inj.route is RouteClass.UNKNOWN or not inj.drug.allowed_routes:
        return  # no routes configured for the drug: CMS's files say nothing of its label
    if inj.route not in inj.drug.allowed_routes:
        yield Finding(detail={"route": inj.route.value, "allowed": sorted(r.value for r in inj.drug.allowed_routes)})


def dose_missing(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """No usable dose, so the drug's HCPCS units cannot be computed (CERT: 'no dose')."""
    if not inj.completed:
        return
    if not inj.dose_documented:
        yield Finding(detail={"reason": "absent"})
    elif inj.drug is not None and inj.dose is None:
        yield Finding(detail={"reason": "unconvertible"})
    elif inj.implausible_dose:
        yield Finding(detail={"reason": "implausible"})


def dose_above_label(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """A dose above the drug's usual maximum needs support in the chart (J3420 is 'up to 1,000 mcg')."""
    if inj.drug is None or inj.dose is None or inj.drug.max_dose is None:
        return
    if inj.completed and inj.dose > inj.drug.max_dose:
        yield Finding(detail={"dose": inj.dose, "max": inj.drug.max_dose, "unit": inj.drug.billing_unit.unit})


def drug_uncoded(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """The drug has no RxNorm, NDC, CVX or HCPCS coding: the claim must name the drug (CPT 96372)."""
    if inj.completed and not inj.drug_coded:
        yield Finding(detail={"text": inj.drug_text})


def admin_time_missing(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """The MAR needs the date and time of the administration (MAC documentation checklist)."""
    if inj.kind == "administration" and inj.completed and not inj.timed:
        yield Finding()


def dos_mismatch(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """The admin's local date differs from the encounter's, or from a charge resting on it."""
    if inj.kind != "administration" or inj.date_of_service is None:
        return
    if visit.date_of_service is not None and inj.date_of_service != visit.date_of_service:
        yield Finding(detail={"admin_date": inj.date_of_service, "other_date": visit.date_of_service,
                              "against": "encounter"})
        return
    for charge in visit.charges:
        if inj.ref in charge.service and charge.date_of_service not in (None, inj.date_of_service):
            yield Finding(detail={"admin_date": inj.date_of_service, "other_date": charge.date_of_service,
                                  "against": f"charge {charge.code}"})
            return


def performer_missing(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """No one is documented as having given the drug (CERT: no signature of whoever gave it)."""
    if inj.kind == "administration" and inj.completed and not inj.performer:
        yield Finding()


def status_not_completed(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """An admin that is not completed is not billable yet; entered-in-error ones never reach the rules."""
    if inj.kind == "administration" and inj.status in NOT_COMPLETED:
        yield Finding(detail={"status": inj.status})


def patient_supplied_drug(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """A patient-supplied drug is no expense of the practice: bill no drug line (BPM ch. 15 s60.1)."""
    if inj.completed and inj.patient_supplied:
        yield Finding()


def noc_drug_code(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """An unclassified code (J3490) needs the NDC, the drug's name and the dose on the claim."""
    if inj.completed and inj.drug is not None and inj.drug.hcpcs in visit.policy.noc_codes:
        yield Finding(detail={"code": inj.drug.hcpcs, "ndc": inj.ndc})


def compounded_drug(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """A compounded or non-FDA-approved product (methylcobalamin injection): coverage is at risk."""
    if inj.completed and inj.drug is not None and inj.drug.drug_class is DrugClass.COMPOUNDED:
        yield Finding()


def self_administered_drug(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """A drug on the payer's self-administered list: neither it nor its administration is paid (BPM 15 s50.2)."""
    if inj.completed and inj.drug is not None and visit.payer is not None:
        if visit.payer.self_administers(inj.drug):
            yield Finding(detail={"payer": visit.payer.display})


def drug_unknown(inj: Injection, visit: Visit) -> Iterator[Finding]:
    """Coded or named, but neither the catalog nor CMS's Part B files identify the drug: no drug line is
    guessed (BILLING-FACTS "Where codes and units come from")."""
    if not inj.completed or inj.drug is not None or inj.patient_supplied or inj.route is RouteClass.ORAL:
        return
    if inj.drug_coded or inj.drug_text:
        admin = (visit.plan.get(inj.ref) or plan(visit).get(inj.ref, PlannedLines())).admin
        yield Finding(detail={"text": inj.drug_text, "ndc": inj.ndc, "assumed": admin.code if admin else None,
                              "candidates": list(inj.drug_candidates), "vaccine": inj.vaccine})
