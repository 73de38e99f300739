"""Turn validated R4 resources into billing facts: one Injection per admin or draft order."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, cast

import msgspec

from cds_service.catalog import PayerProfiles
from cds_service.drugs import DrugFacts, Formulary
from cds_service.fhir import shapes
from cds_service.fhir.parse import Resources, ref_key
from cds_service.fhir.shapes import When
from cds_service.rules.model import (
    BillingPolicy,
    ChargeLine,
    Injection,
    InvalidResource,
    PayerProfile,
    Quantity,
    RouteClass,
    Setting,
    Visit,
)
from cds_service.units import VOLUME_UNITS

RXNORM_SYSTEMS = {"http://www.nlm.nih.gov/research/umls/rxnorm", "urn:oid:2.16.840.1.113883.6.88"}
NDC_SYSTEMS = {"http://hl7.org/fhir/sid/ndc", "urn:oid:2.16.840.1.113883.6.69"}
CVX_SYSTEMS = {"http://hl7.org/fhir/sid/cvx", "urn:oid:2.16.840.1.113883.12.292"}
PAYMENT_TYPOLOGY = "urn:oid:2.16.840.1.113883.3.221.5"
CPT_SYSTEMS = {"http://www.ama-assn.org/go/cpt", "urn:oid:2.16.840.1.113883.6.12"}
HCPCS_SYSTEMS = {
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "urn:oid:2.16.840.1.113883.6.285",
    "urn:oid:2.16.840.1.113883.6.14",
}
SNOMED = "http://snomed.info/sct"
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
V2_ROUTE = "http://terminology.hl7.org/CodeSystem/v2-0162"
NCI_SYSTEMS = {"http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "urn:oid:2.16.840.1.113883.3.26.1.1"}

# Route codings seen in real data, by code system (BILLING-FACTS "Routes").
ROUTE_CODES: dict[str, dict[str, RouteClass]] = {
    SNOMED: {
        "78421000": RouteClass.IM, "255559005": RouteClass.IM,
        "34206005": RouteClass.SC, "263887005": RouteClass.SC,
        "47625008": RouteClass.IV_PUSH, "255560000": RouteClass.IV_PUSH,
        "58100008": RouteClass.INTRA_ARTERIAL, "26643006": RouteClass.ORAL,
        "372464004": RouteClass.OTHER, "6064005": RouteClass.OTHER, "46713006": RouteClass.OTHER,
        "37161004": RouteClass.OTHER, "447694001": RouteClass.OTHER, "54485002": RouteClass.OTHER,
        "12130007": RouteClass.OTHER, "72607000": RouteClass.OTHER, "37839007": RouteClass.OTHER,
    },
    V3_ROUTE: {
        "IM": RouteClass.IM, "IMINJ": RouteClass.IM,
        "SQ": RouteClass.SC, "SC": RouteClass.SC, "SUBCUT": RouteClass.SC,
        "IVINJ": RouteClass.IV_PUSH, "IVPUSH": RouteClass.IV_PUSH, "IVINJBOL": RouteClass.IV_PUSH,
        "IV": RouteClass.IV_PUSH, "IVINFUS": RouteClass.IV_INFUSION, "IVC": RouteClass.IV_INFUSION,
        "IAINJ": RouteClass.INTRA_ARTERIAL, "IA": RouteClass.INTRA_ARTERIAL,
        "PO": RouteClass.ORAL, "SWALLOW": RouteClass.ORAL,
        "IDINJ": RouteClass.OTHER, "NASINHL": RouteClass.OTHER, "TOPICAL": RouteClass.OTHER,
        "IARTINJ": RouteClass.OTHER, "ILESINJ": RouteClass.OTHER, "ITINJ": RouteClass.OTHER,
        "IVITINJ": RouteClass.OTHER, "IBURSINJ": RouteClass.OTHER, "SL": RouteClass.OTHER,
    },
    V2_ROUTE: {
        "IM": RouteClass.IM, "SC": RouteClass.SC, "IV": RouteClass.IV_PUSH, "IA": RouteClass.INTRA_ARTERIAL,
        "PO": RouteClass.ORAL, "ID": RouteClass.OTHER, "NS": RouteClass.OTHER, "TP": RouteClass.OTHER,
        "IS": RouteClass.OTHER, "IB": RouteClass.OTHER, "IT": RouteClass.OTHER, "IO": RouteClass.OTHER,
        "IN": RouteClass.OTHER, "IH": RouteClass.OTHER, "SL": RouteClass.OTHER, "TD": RouteClass.OTHER,
        "EP": RouteClass.OTHER, "IP": RouteClass.OTHER,
    },
    "nci": {
        "C28161": RouteClass.IM, "C38299": RouteClass.SC, "C38276": RouteClass.IV_PUSH,
        "C38222": RouteClass.INTRA_ARTERIAL, "C38288": RouteClass.ORAL, "C38238": RouteClass.OTHER,
    },
}

# Free-text routes, most specific first ("IV push" before "IV").
ROUTE_TEXT: tuple[tuple[re.Pattern[str], RouteClass], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), route)
    for pattern, route in (
        (r"\b(iv\s*push|ivp|intravenous(ly)?\s+push|iv\s*bolus)\b", RouteClass.IV_PUSH),
        (r"\b(iv\s*infusion|intravenous(ly)?\s+infusion|infus(ed|ion)|ivpb|iv\s*drip)\b", RouteClass.IV_INFUSION),
        (r"\b(intra-?arterial(ly)?|i\.a\.)", RouteClass.INTRA_ARTERIAL),
        (r"\b(im|i\.m\.|intramuscular(ly)?|intra-muscular(ly)?)\b", RouteClass.IM),
        (r"\b(sc|sq|s\.c\.|subq|sub-q|sub\s*cut|subcut(aneous(ly)?)?|hypodermic)\b", RouteClass.SC),
        (r"\b(iv|i\.v\.|intravenous(ly)?)\b", RouteClass.IV_PUSH),
        # Documented routes that are neither SC/IM nor IV (after them: "IM ... rectal pain" is IM): no 96372,
        # and not "no route".
        (r"\b(intra-?articular(ly)?|intra-?synovial|intra-?bursal|intra-?lesional(ly)?|intra-?dermal(ly)?"
         r"|intra-?vitreal|intra-?thecal|intra-?vesical|intra-?nasal|nasal|epidural|inhal(ed|ation)|topical(ly)?"
         r"|ophthalmic|sublingual|transdermal|rectal(ly)?|vaginal(ly)?|joint injection)\b", RouteClass.OTHER),
        (r"\b(po|p\.o\.|oral(ly)?|by mouth)\b", RouteClass.ORAL),
    )
)

# A product's dose form, in its name or the Medication's form (RxNorm's dose form names, and the words charts
# use): with no injection route charted, a form that is not injected settles that the order or administration is
# not an injection, and the service has nothing to say about it (issue 20). Names that say injected win.
INJECTED_FORM = re.compile(r"\b(inject\w*|syringes?|auto-?injectors?|pen injectors?|vials?|cartridges?"
                           r"|intramuscular|subcutaneous|intravenous|infusion)\b", re.I)
NOT_INJECTED_FORM = re.compile(
    r"\b(oral|chewable|sublingual|buccal|tablets?|capsules?|caplets?|pills?|softgels?|gummies|syrup|elixir"
    r"|lozenges?|troches?|chewing gum|mouthwash"
    r"|toothpaste|topical|cutaneous|transdermal|patch|ophthalmic|otic|nasal|inhal(ant|er|ation)|nebuli[sz]er"
    r"|rectal|suppositor(y|ies)|enema|vaginal|shampoo|cream|ointment|lotion)\b", re.I)

NON_BILLABLE_CHARGE = {"entered-in-error", "aborted"}
PATIENT_SUPPLIED_TEXT = re.compile(
    r"patient[- ]?(supplied|provided|brought|owned)|(pt|patient)'?s own (supply|medication|drug|vial)"
    r"|brought (in )?(by|from) (the )?(patient|home)|own supply",
    re.IGNORECASE,
)


class Terms(msgspec.Struct, frozen=True):
    """The configuration facts read: the drugs (catalog and CMS's files), payer profiles, code tables and
    facility lists."""

    formulary: Formulary
    payers: PayerProfiles
    policy: BillingPolicy
    facility_classes: frozenset[str]
    facility_pos: frozenset[str]


def build(
    resources: Resources,
    terms: Terms,
    *,
    hook_kind: Literal["order-sign", "encounter"],
    patient_id: str,
    encounter_id: str | None,
) -> Visit:
    """Build the Visit the rules read: injections, history, captured charges and setting."""
    enc = resources.encounter
    if encounter_id is None and resources.orders:
        encounter_id = next(filter(None, (ref_id(o.encounter, "Encounter") for o in resources.orders)), None)
    if enc is not None and encounter_id is not None and enc.id != encounter_id:
        enc = None  # not the encounter in context
    tz = encounter_tz(enc)
    dos = local_date(enc.period.start if enc and enc.period else None, tz)
    encounter_ref = f"Encounter/{encounter_id}" if encounter_id else None
    diagnoses = encounter_diagnoses(resources, encounter_ref)
    unplaced = [ma for ma in resources.administrations if not placed(admin_times(ma), tz)]
    left_out = {id(ma) for ma in unplaced}
    kept = [ma for ma in resources.administrations
            if ma.status != "entered-in-error" and id(ma) not in left_out]  # RULES: ignored
    kept = [ma for ma in kept if injected(ma, ma.dosage, resources)]
    when = {id(ma): local_when(ma, tz) for ma in kept}  # each administration's time converted once
    mine = {id(ma) for ma in kept if belongs(ma, encounter_ref, when[id(ma)][1], dos)}
    current = tuple(administration(ma, resources, terms.formulary, when[id(ma)], diagnoses)
                    for ma in kept if id(ma) in mine)
    history = tuple(earlier_dose(ma, resources, terms.formulary, when[id(ma)]) for ma in kept if id(ma) not in mine)
    if hook_kind == "order-sign":
        order_dos = dos or dt.date.today()
        current = tuple(order(mr, resources, terms.formulary, order_dos, tz, diagnoses) for mr in resources.orders
                        if injected(mr, first_instruction(mr), resources))
    return Visit(
        hook_kind=hook_kind,
        patient_ref=f"Patient/{patient_id}",
        encounter_ref=encounter_ref,
        setting=setting(enc, terms),
        date_of_service=dos,
        injections=current,
        history=history,
        charges=tuple(charge_lines([c for c in resources.charges if placed(charge_times(c), tz)], tz,
                                   terms.formulary, dos)),
        invalid=(*resources.invalid, *unplaceable(unplaced, "administrations"),
                 *unplaceable([c for c in resources.charges if not placed(charge_times(c), tz)], "charges")),
        repaired=tuple(resources.repaired),
        payer=payer(resources, terms.payers),
        policy=terms.policy,
    )


# --- references and time ------------------------------------------------------------------

def placed(times: Iterable[When], tz: dt.tzinfo | None) -> bool:
    """Every time can be placed in UTC and the encounter's time zone: FHIR allows 0001-01-01T00:00:00Z, which
    is before year 1 at -05:00, and 9999-12-31T23:59:59-14:00, which is after 9999 in UTC."""
    for when in times:
        # Only years 1 and 9999 can leave the calendar by an offset (at most a day): no conversion for the rest.
        if isinstance(when, dt.datetime) and when.tzinfo is not None and not 1 < when.year < 9999:
            try:
                when.astimezone(dt.UTC)
                if tz is not None:
                    when.astimezone(tz)
            except OverflowError:
                return False
    return True


def admin_times(ma: shapes.MedicationAdministration) -> list[When]:
    period = ma.effectivePeriod
    return [ma.effectiveDateTime, *((period.start, period.end) if period else ())]


def charge_times(item: shapes.ChargeItem) -> list[When]:
    period = item.occurrencePeriod
    return [item.occurrenceDateTime, *((period.start, period.end) if period else ())]


def unplaceable(resources: Iterable[shapes.Resource], where: str) -> Iterator[InvalidResource]:
    """An invalid-resource finding for each resource whose time cannot be placed: it is left out, and the
    rest of the request is evaluated."""
    for resource in resources:
        yield InvalidResource(
            where=where,
            resource_type=resource.get_resource_type(),
            resource_id=resource.id,
            problems=("a date-time that cannot be placed in the encounter's time zone or in UTC (it falls before "
                      "year 1 or after year 9999 there): the resource is left out",),
        )


def ref_id(ref: shapes.Reference | None, rtype: str) -> str | None:
    key = ref_key(ref.reference if ref is not None else None)
    if key and key.startswith(rtype + "/"):
        return key.split("/", 1)[1]
    return None


def encounter_tz(enc: shapes.Encounter | None) -> dt.tzinfo | None:
    """The encounter's local offset, from its period (the only time zone evidence in the data)."""
    period = enc.period if enc is not None else None
    for value in (period.start, period.end) if period else ():
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.tzinfo
    return None


def local_date(value: When, tz: dt.tzinfo | None) -> dt.date | None:
    """Date of service of a FHIR date or dateTime, in the encounter's local time zone."""
    if isinstance(value, dt.datetime):
        if tz is not None and value.tzinfo is not None:
            value = value.astimezone(tz)
        day: dt.date = value.date()
        return day
    if isinstance(value, dt.date):
        return value
    return None


# --- drugs, routes and doses --------------------------------------------------------------

def codings(concept: shapes.CodeableConcept | str | None) -> Sequence[shapes.Coding]:
    """A concept's codings; none for a concept that is only a text (a medicationReference's display)."""
    return (concept.coding or ()) if concept is not None and not isinstance(concept, str) else ()


def concept_text(concept: shapes.CodeableConcept | str | None) -> str | None:
    """A concept's text (the text itself for a reference's display)."""
    return concept if isinstance(concept, str) or concept is None else concept.text


def first_instruction(mr: shapes.MedicationRequest) -> shapes.Dosage | None:
    return mr.dosageInstruction[0] if mr.dosageInstruction else None


def short_system(system: str | None) -> str | None:
    if system in RXNORM_SYSTEMS:
        return "rxnorm"
    if system in NDC_SYSTEMS:
        return "ndc"
    if system in CVX_SYSTEMS:
        return "cvx"
    if system in HCPCS_SYSTEMS:
        return "hcpcs"
    if system in CPT_SYSTEMS:
        return "cpt"
    return None


Drug = tuple[shapes.CodeableConcept | str | None, shapes.Medication | None]


def medication_of(resource: shapes.Ordered, resources: Resources) -> Drug:
    """Return (CodeableConcept, Medication or None) for an admin or order, however it names its drug; the
    concept is the reference's display text when the Medication cannot be had."""
    if resource.medicationCodeableConcept is not None:
        return resource.medicationCodeableConcept, None
    named = resource.medicationReference
    reference = named.reference if named is not None else None
    med: shapes.Medication | None = None
    if reference and reference.startswith("#"):
        med = next((cast(shapes.Medication, c) for c in resource.contained or []
                    if c.id == reference[1:] and c.get_resource_type() == "Medication"), None)
    elif reference:
        med = resources.medications.get(reference) or resources.medications.get(ref_key(reference) or "")
    if med is None:
        return (named.display if named is not None else None), None
    return med.code, med


def injected(resource: shapes.Ordered, dosage: shapes.AdministrationDosage | shapes.Dosage | None,
             resources: Resources) -> bool:
    """False for a product whose dose form is not injected (an oral tablet, a cream, an inhaler) given or ordered
    without an injection route charted (coded, or in the route's or the dosage's text); a vaccine is always the
    service's (an oral or nasal one has its own administration code). Another encounter's administration is read
    without its dosage (fhir.parse.HISTORY_ELEMENTS), so there the product's name decides: an oral B12 tablet is
    no earlier injection for the frequency rule."""
    concept, med = medication_of(resource, resources)
    names = [concept_text(concept), *(c.display for c in codings(concept))]
    if med is not None:
        names += [concept_text(med.form), *(c.display for c in codings(med.form))]
    if named_injected(" ".join(filter(None, names))):
        return True
    if any(c.system in CVX_SYSTEMS for c in codings(concept)):
        return True
    charted, _ = route_of(dosage.route if dosage else None, [dosage.text if dosage else None])
    return charted.is_injection or charted in (RouteClass.IV_PUSH, RouteClass.IV_INFUSION,
                                               RouteClass.INTRA_ARTERIAL)


def named_injected(text: str) -> bool:
    """The product's names and form do not say it is not injected (or say it is, or that it is a vaccine).

    The regular expressions take some 7 µs a text, and the same few product names come back in every call and
    in every administration of a history: remembered, they cost a 1,000-administration history 7 ms less
    (of about 45). A long text is checked, not remembered, so the memo stays small."""
    return _named_injected(text) if len(text) <= MEMO_TEXT else _names_say_injected(text)


MEMO_TEXT = 300  # characters: longer texts are not remembered


def _names_say_injected(text: str) -> bool:
    return not NOT_INJECTED_FORM.search(text) or bool(INJECTED_FORM.search(text)) or "vaccin" in text.lower()


_named_injected = lru_cache(maxsize=4096)(_names_say_injected)


def drug_of(resource: shapes.Ordered, resources: Resources, formulary: Formulary, *, day: dt.date | None,
            route: RouteClass, dose: shapes.Quantity | None) -> DrugFacts:
    """The drug an admin or order names, and its dose in billing units, on a date of service."""
    concept, med = medication_of(resource, resources)
    text = concept_text(concept)
    coded = [(system, c.code.strip()) for c in codings(concept)
             if c.code and c.code.strip() and (system := short_system(c.system))]
    names = [text] if text else []
    names += [c.display for c in codings(concept) if c.display]
    if med is not None:
        names += [concept_text(i.itemCodeableConcept) or "" for i in med.ingredient or []]
    quantity = None
    if dose is not None and dose.value is not None:
        quantity = Quantity(Decimal(dose.value), (dose.code or dose.unit or "").strip())
    return formulary.facts(coded, [n for n in names if n], day=day, route=route, dose=quantity,
                           strength=strength_per_ml(med))


def route_of(route: shapes.CodeableConcept | None, texts: Iterable[str | None]) -> tuple[RouteClass, bool]:
    """Classify a route from its standard coding, else from text. Returns (route, coded)."""
    for coding in codings(route):
        system = "nci" if coding.system in NCI_SYSTEMS else coding.system
        found = ROUTE_CODES.get(system or "", {}).get((coding.code or "").strip())
        if found is not None:
            return found, True
    candidates = [concept_text(route), *(c.display for c in codings(route)), *texts]
    for text in filter(None, candidates):
        for pattern, found in ROUTE_TEXT:
            if pattern.search(text):
                return found, False
    return RouteClass.UNKNOWN, False


def strength_per_ml(med: shapes.Medication | None) -> Quantity | None:
    """Concentration from a Medication's single ingredient strength, as amount per mL."""
    ingredients = (med.ingredient or ()) if med is not None else ()
    strength = ingredients[0].strength if len(ingredients) == 1 else None
    if strength is None:
        return None
    num, den = strength.numerator, strength.denominator
    if num is None or den is None or num.value is None or not den.value:
        return None
    if (den.code or den.unit or "").strip().lower() not in VOLUME_UNITS:
        return None
    return Quantity(Decimal(num.value) / Decimal(den.value), (num.code or num.unit or "").strip())


# --- the facts --------------------------------------------------------------------------------

def administration(
    ma: shapes.MedicationAdministration, resources: Resources, formulary: Formulary, when: LocalWhen,
    visit_dx: tuple[str, ...],
) -> Injection:
    """This visit's administration: everything billing and documentation rules read (when: local_when)."""
    dosage = ma.dosage
    route, route_coded = route_of(dosage.route if dosage else None, [dosage.text if dosage else None])
    if route in (RouteClass.IV_PUSH, RouteClass.IV_INFUSION):
        route = iv_route(ma, route)
    dose = dosage.dose if dosage else None
    found = drug_of(ma, resources, formulary, day=when[1], route=route, dose=dose)
    notes = [n.text for n in ma.note or []] + [dosage.text if dosage else None]
    return given(
        ma, found, when,
        **dosing(found, route, route_coded, dose),
        performer=bool(ma.performer),
        patient_supplied=patient_supplied(ma, notes),
        diagnoses=reason_codes(ma, resources) or visit_dx,
    )


def earlier_dose(
    ma: shapes.MedicationAdministration, resources: Resources, formulary: Formulary, when: LocalWhen
) -> Injection:
    """Another encounter's administration: what the frequency rule reads (drug, status and when)."""
    found = drug_of(ma, resources, formulary, day=when[1], route=RouteClass.UNKNOWN, dose=None)
    return given(ma, found, when)


LocalWhen = tuple[dt.datetime | None, dt.date | None, bool]  # see local_when


def local_when(ma: shapes.MedicationAdministration, tz: dt.tzinfo | None) -> LocalWhen:
    """When an administration was given, in the encounter's time zone: (the date-time, or None for a date
    alone; its date of service; whether a time of day is charted)."""
    value = effective(ma)
    at = local_time(value, tz)
    return at, at.date() if at is not None else local_date(value, tz), isinstance(value, dt.datetime)


def given(ma: shapes.MedicationAdministration, found: DrugFacts, when: LocalWhen, **more: Any) -> Injection:
    """An administration's drug, status and time: what every administration's Injection carries (and more)."""
    at, day, timed = when
    return Injection(
        ref=f"MedicationAdministration/{ma.id}",
        kind="administration",
        status=ma.status,
        drug=found.drug,
        drug_coded=found.coded,
        drug_text=found.text,
        drug_candidates=found.candidates,
        vaccine=found.vaccine,
        at=at,
        timed=timed,
        date_of_service=day,
        **more,
    )


def effective(ma: shapes.MedicationAdministration) -> When:
    """effectiveDateTime, or the start of effectivePeriod."""
    return ma.effectiveDateTime or (ma.effectivePeriod.start if ma.effectivePeriod else None)


def order(
    mr: shapes.MedicationRequest, resources: Resources, formulary: Formulary, dos: dt.date, tz: dt.tzinfo | None,
    visit_dx: tuple[str, ...],
) -> Injection:
    instruction = first_instruction(mr)
    route, route_coded = route_of(
        instruction.route if instruction else None, [instruction.text if instruction else None]
    )
    dose: shapes.Quantity | None = None
    for dose_rate in (instruction.doseAndRate or []) if instruction else []:
        dose = dose_rate.doseQuantity or dose
    found = drug_of(mr, resources, formulary, day=dos, route=route, dose=dose)
    notes = [n.text for n in mr.note or []] + [instruction.text if instruction else None]
    return Injection(
        ref=f"MedicationRequest/{mr.id}",
        kind="order",
        status=mr.status,
        drug=found.drug,
        drug_coded=found.coded,
        drug_text=found.text,
        drug_candidates=found.candidates,
        vaccine=found.vaccine,
        **dosing(found, route, route_coded, dose),
        timed=True,  # an order has no administration time yet
        date_of_service=dos,
        performer=True,
        patient_supplied=patient_supplied(mr, notes),
        diagnoses=reason_codes(mr, resources) or visit_dx,
    )


def dosing(found: DrugFacts, route: RouteClass, route_coded: bool, dose: shapes.Quantity | None) -> dict[str, Any]:
    """What an administration and an order both say of the product, route and dose, as Injection fields."""
    return {
        "ndc": found.ndc,
        "container": found.container,
        "route": route,
        "route_coded": route_coded,
        "dose": found.dose,
        "dose_documented": dose is not None and dose.value is not None,
    }


def patient_supplied(resource: shapes.Ordered, texts: Iterable[str | None]) -> bool:
    """The patient brought the drug: an extension saying so, or a note or dosage text that does."""
    for ext in resource.extension or []:
        url = (ext.url or "").lower()
        if ("patient-supplied" in url or "patientsupplied" in url or "own-supply" in url) and ext.valueBoolean:
            return True
    return any(PATIENT_SUPPLIED_TEXT.search(text) for text in texts if text)


def local_time(value: When, tz: dt.tzinfo | None) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(tz) if tz is not None and value.tzinfo is not None else value
    return None


def payer(resources: Resources, profiles: PayerProfiles) -> PayerProfile | None:
    """The payer profile of the patient's first active coverage (by Coverage.order), or None without one."""
    active = [c for c in resources.coverages if c.status in (None, "active")]
    if not active:
        return None
    coverage = min(active, key=lambda c: c.order if c.order is not None else 1_000_000)
    codes = [c.code for c in codings(coverage.type) if c.code and c.system in (PAYMENT_TYPOLOGY, None)]
    names = [p.display for p in coverage.payor or [] if p.display]
    return profiles.select(codes, names)


def iv_route(ma: shapes.MedicationAdministration, route: RouteClass) -> RouteClass:
    """An IV admin lasting over 15 minutes is an infusion, one of 15 minutes or less a push (CPT, BILLING-FACTS);
    with no times, a rate makes it an infusion, and otherwise the charted route stands."""
    period = ma.effectivePeriod
    if period is not None and isinstance(period.start, dt.datetime) and isinstance(period.end, dt.datetime):
        if (period.start.tzinfo is None) == (period.end.tzinfo is None):
            long = (period.end - period.start) > dt.timedelta(minutes=15)
            return RouteClass.IV_INFUSION if long else RouteClass.IV_PUSH
    dosage = ma.dosage
    if dosage is not None and (dosage.rateQuantity is not None or dosage.rateRatio is not None):
        return RouteClass.IV_INFUSION
    return route


def belongs(ma: shapes.MedicationAdministration, encounter_ref: str | None, admin_dos: dt.date | None,
            dos: dt.date | None) -> bool:
    """An admin is this encounter's when it says so, or, saying nothing, falls on its date."""
    linked = ref_key(ma.context.reference if ma.context is not None else None)
    if linked is not None and linked.startswith("Encounter/"):
        return linked == encounter_ref
    return admin_dos is not None and admin_dos == dos


def condition_codes(condition: shapes.Condition) -> list[str]:
    return [c.code.strip().upper() for c in codings(condition.code) if c.code]


def reason_codes(resource: shapes.Ordered, resources: Resources) -> tuple[str, ...]:
    """Diagnosis codes linked to one admin or order: reasonCode and reasonReference."""
    found = [c.code.strip().upper() for concept in resource.reasonCode or [] for c in codings(concept) if c.code]
    by_ref = {f"Condition/{c.id}": c for c in resources.conditions if c.id}
    for ref in resource.reasonReference or []:
        condition = by_ref.get(ref_key(ref.reference) or "")
        if condition is not None:
            found += condition_codes(condition)
    return tuple(dict.fromkeys(found))


def encounter_diagnoses(resources: Resources, encounter_ref: str | None) -> tuple[str, ...]:
    """Diagnosis codes of the encounter: Encounter.diagnosis and reasonCode, and encounter-diagnosis Conditions."""
    enc = resources.encounter
    by_ref = {f"Condition/{c.id}": c for c in resources.conditions if c.id}
    found: list[str] = []
    if enc is not None:
        for dx in enc.diagnosis or []:
            condition = by_ref.get(ref_key(dx.condition.reference) or "")
            if condition is not None:
                found += condition_codes(condition)
        found += [c.code.strip().upper() for concept in enc.reasonCode or [] for c in codings(concept) if c.code]
    for condition in resources.conditions if encounter_ref else ():
        linked = ref_key(condition.encounter.reference if condition.encounter is not None else None)
        if linked == encounter_ref and any(c.code == "encounter-diagnosis" for concept in condition.category or []
                                           for c in codings(concept)):
            found += condition_codes(condition)
    return tuple(dict.fromkeys(found))


def setting(enc: shapes.Encounter | None, terms: Terms) -> Setting:
    """Facility or not, from Encounter.class and the place-of-service code of its Location."""
    if enc is None:
        return Setting.UNKNOWN
    class_code = enc.class_fhir.code if enc.class_fhir is not None else None
    pos_codes = set(place_of_service(enc))
    if class_code in terms.facility_classes or pos_codes & terms.facility_pos:
        return Setting.FACILITY
    if class_code or pos_codes:
        return Setting.NON_FACILITY
    return Setting.UNKNOWN


def place_of_service(enc: shapes.Encounter) -> Iterator[str]:
    """CMS place-of-service codes on the types of the encounter's contained Locations."""
    for resource in enc.contained or []:
        if resource.get_resource_type() != "Location":
            continue
        for concept in cast(shapes.Location, resource).type or []:
            for coding in codings(concept):
                system = (coding.system or "").lower().replace("_", "-")
                if coding.code and ("place-of-service" in system or system == "urn:oid:2.16.840.1.113883.6.50"):
                    yield coding.code.strip()


def charge_lines(
    charges: Iterable[shapes.ChargeItem], tz: dt.tzinfo | None, formulary: Formulary, dos: dt.date | None
) -> Iterator[ChargeLine]:
    """The charges already captured for the encounter, as billing lines; a drug line's code is checked
    against CMS's files for the quarter of its date of service."""
    for item in charges:
        if item.status in NON_BILLABLE_CHARGE:
            continue
        code = billing_code(item.code)
        if code is None:
            continue
        when = item.occurrenceDateTime or (item.occurrencePeriod.start if item.occurrencePeriod else None)
        day = local_date(when, tz)
        yield ChargeLine(
            code=code[1],
            system=code[0],
            units=Decimal(item.quantity.value) if item.quantity and item.quantity.value is not None else Decimal(1),
            modifiers=tuple(
                ext.valueCoding.code
                for ext in item.extension or []
                if (ext.url or "").endswith("/procedure-modifier") and ext.valueCoding and ext.valueCoding.code
            ),
            date_of_service=day,
            id=item.id,
            service=tuple(filter(None, (ref_key(s.reference) for s in item.service or []))),
            **formulary.captured(code[1], day or dos),
        )


def billing_code(concept: shapes.CodeableConcept | None) -> tuple[Literal["cpt", "hcpcs"], str] | None:
    """The CPT or HCPCS code of a ChargeItem, by system, else by the code's shape."""
    for coding in codings(concept):
        code = (coding.code or "").strip().upper()
        if coding.system in CPT_SYSTEMS:
            return "cpt", code
        if coding.system in HCPCS_SYSTEMS:
            return "hcpcs", code
    for coding in codings(concept):
        code = (coding.code or "").strip().upper()
        if re.fullmatch(r"\d{4}[0-9FTU]", code):
            return "cpt", code
        if re.fullmatch(r"[A-V]\d{4}", code):
            return "hcpcs", code
    return None
