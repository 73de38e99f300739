"""Which drug an administration or order gives, and how it bills on its date of service.

The drug is identified, in this order (issue 18; BILLING-FACTS "Where codes and units come from"):
1. an NDC, in any of its forms: CMS's crosswalk for the quarter gives its code, and its package the billable
   units per mL and per item;
2. a HCPCS or CPT code in the chart;
3. an RxNorm or CVX code of the configured catalog;
4. a name: the configured catalog's names, then CMS's drug names and short descriptions.
A drug found nowhere stays unknown; it is never guessed. The configured catalog stays on top for what CMS
does not say (routes, usual maximum, class, container, the payer lists keyed by it). The code, billing unit
and payment limit are CMS's for the quarter that holds the date of service.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from msgspec import Struct

from cds_service.catalog import CuratedDrug, DrugCatalog, Product
from cds_service.partb import PartB, Pick, names, ndc
from cds_service.partb.index import billing_unit, units_per_item, units_per_ml
from cds_service.partb.model import Code, Package
from cds_service.rules.model import Drug, DrugClass, Quantity, RouteClass
from cds_service.units import EACH, canonical, convert

Container = Literal["single-dose", "multi-dose"]
IDENTIFIED_BY = Literal["ndc", "code", "rxnorm", "cvx", "name"]
# A drug named as a vaccine is one, known or not: it takes a vaccine administration code, never 96372.
VACCINE_WORDS = re.compile(r"\b(vaccines?|vaccination|immuni[sz]ation|toxoids?)\b", re.IGNORECASE)
ORAL_WORDS = frozenset({"oral", "tab", "tablet", "tablets", "capsule", "capsules", "po"})
ESRD = "esrd"
REMEMBERED = 1024  # drug lookups remembered per Formulary (see Formulary.facts): at most about 2 MB
REMEMBERED_TEXT = 400  # characters of codes and names at most in a remembered lookup's key


class CodeClasses(Struct, frozen=True):
    """What a code says of its drug's class (BILLING-FACTS "Drug class from the code"), from configuration."""

    antineoplastic: tuple[str, str] = ("J9000", "J9999")
    hormonal: frozenset[str] = frozenset()
    vaccines: tuple[tuple[str, str], ...] = (("90476", "90759"), ("91300", "91399"))
    vaccine_kinds: Mapping[str, str] = {}  # code -> influenza, pneumococcal, hepatitis-b
    vaccine_names: frozenset[str] = frozenset()  # brand names that say "a vaccine" (Comirnaty, Arexvy)

    def of(self, code: str) -> DrugClass:
        if code in self.hormonal:
            return DrugClass.ANTINEOPLASTIC_HORMONAL
        if in_range(code, self.antineoplastic):
            return DrugClass.ANTINEOPLASTIC_NON_HORMONAL
        if self.vaccine(code):
            return DrugClass.VACCINE
        return DrugClass.OTHER

    def vaccine(self, code: str) -> bool:
        return any(in_range(code, bounds) for bounds in self.vaccines)

    def named_vaccine(self, text: str) -> bool:
        """A text that says it is a vaccine: a word such as 'vaccine' or 'toxoid', or a configured brand name."""
        return bool(VACCINE_WORDS.search(text)) or bool(self.vaccine_names & set(names.TOKEN.findall(text.lower())))


def in_range(code: str, bounds: tuple[str, str]) -> bool:
    return len(code) == len(bounds[0]) and code[0] == bounds[0][0] and bounds[0] <= code <= bounds[1]


class DrugFacts(Struct, frozen=True):
    """What an administration's drug coding, name and dose come to on its date of service."""

    drug: Drug | None
    coded: bool  # an RxNorm, NDC, CVX or HCPCS/CPT coding is present, known or not
    text: str | None
    ndc: str | None = None  # as charted
    container: Container | None = None
    dose: Decimal | None = None  # in drug.billing_unit.unit
    vaccine: bool = False  # coded as a vaccine (CVX, a vaccine CPT code), known or not
    candidates: tuple[str, ...] = ()  # the codes a name could not choose between


class Found(Struct, frozen=True):
    """A drug identified, before its code is chosen for the date of service."""

    how: IDENTIFIED_BY
    codes: tuple[str, ...]  # candidate codes in force that quarter
    curated: CuratedDrug | None = None
    product: Product | None = None
    packages: tuple[Package, ...] = ()
    name: tuple[str, ...] = ()  # the words of the CMS name matched


class Formulary:
    """The configured catalog on top of CMS's Part B files."""

    def __init__(self, catalog: DrugCatalog, partb: PartB, classes: CodeClasses,
                 noc_codes: frozenset[str] = frozenset()) -> None:
        self.catalog = catalog
        self.partb = partb
        self.classes = classes
        self.drug_codes = DrugCodes(self, noc_codes)
        # The same coding, name, quarter, route and dose always come to the same facts, and a chart repeats
        # them: a history of 1,000 monthly B12 doses asks 1,000 times about one drug in a dozen quarters.
        # Remembered, a lookup costs a dict probe instead of about 14 us.
        self._remembered: dict[tuple[object, ...], DrugFacts] = {}

    def captured(self, code: str, day: dt.date | None) -> dict[str, Any]:
        """What a captured charge's code is on its date, as ChargeLine fields: a drug's code, and whether it is
        in force (see ChargeLine.stale)."""
        if code not in self.drug_codes:
            return {}
        pick = self.partb.pick(day)
        if pick is None or not self.partb.not_in_force(code, pick.index):
            return {"drug": True}
        return {"drug": True, "stale": "dropped" if self.partb.dropped(code, pick.index) else "not-yet",
                "current": tuple(sorted(self.partb.in_force(code, pick.index) - {code})),
                "quarter": pick.quarter.id}

    def facts(
        self,
        codings: Sequence[tuple[str, str]],
        names: Sequence[str],
        *,
        day: dt.date | None,
        route: RouteClass,
        dose: Quantity | None,
        strength: Quantity | None,
    ) -> DrugFacts:
        """The drug of (system, code) codings (rxnorm, ndc, cvx, hcpcs, cpt) and names, on a date of service."""
        pick = self.partb.pick(day)
        if sum(len(n) for n in names) + sum(len(c) for _, c in codings) > REMEMBERED_TEXT:
            return self._facts(codings, names, pick, route, dose, strength)  # a text no formulary repeats
        key = (tuple(codings), tuple(names), pick.index if pick else None, pick.fit if pick else None, route, dose,
               strength)
        found = self._remembered.get(key)
        if found is None:
            found = self._facts(codings, names, pick, route, dose, strength)
            if len(self._remembered) >= REMEMBERED:
                self._remembered.clear()  # a crude bound: real formularies stay far below it
            self._remembered[key] = found
        return found

    def _facts(self, codings: Sequence[tuple[str, str]], names: Sequence[str], pick: Pick | None,
               route: RouteClass, dose: Quantity | None, strength: Quantity | None) -> DrugFacts:
        text = next(iter(names), None)
        charted_ndc = next((code for system, code in codings if system == "ndc"), None)
        vaccine = any(s == "cvx" or (s in ("hcpcs", "cpt") and self.classes.vaccine(c)) for s, c in codings)
        vaccine = vaccine or any(self.classes.named_vaccine(name) for name in names)
        found = self.identify(codings, names, pick, route, dose)
        if found is None or not found.codes:
            candidates = found.codes if found is not None else ()
            return DrugFacts(None, bool(codings), text, charted_ndc, vaccine=vaccine, candidates=candidates)
        code = choose(self.partb, pick, found, route, dose)
        if code is None:
            return DrugFacts(None, bool(codings), text, charted_ndc, vaccine=vaccine, candidates=found.codes)
        curated = found.curated or self.curated_for(code, pick)
        drug = self.drug(code, curated, found, pick)
        return DrugFacts(
            drug=drug,
            coded=bool(codings),
            text=text,
            ndc=charted_ndc,
            container=container_of(found.product),
            dose=dose_in_units(dose, drug, found, strength, curated),
            vaccine=vaccine or drug.drug_class is DrugClass.VACCINE,
        )

    def curated_for(self, code: str, pick: Pick | None) -> CuratedDrug | None:
        """The configured drug billed under a code, or under the code that replaced it or that it replaced
        (a Depo-Medrol NDC under J1030 in 2024 Q1 is the catalog's methylprednisolone acetate, J1010)."""
        found = self.catalog.by_code(code)
        if found is not None or pick is None or not self.partb.known(code):
            return found
        for at in (len(self.partb.quarters) - 1, 0):
            for other in self.partb.in_force(code, at):
                found = found or self.catalog.by_code(other)
        return found

    def drug_for(self, name: str, day: dt.date | None, dose: Quantity | None = None) -> Drug | None:
        """A configured drug (by key) or a code, as billed on a date: for the console and tests."""
        pick = self.partb.pick(day)
        at = pick.index if pick is not None else None
        curated = self.catalog.drugs.get(name) or self.catalog.by_code(name)
        codes = curated.hcpcs if curated is not None else (name,)
        found = Found("code", self.first_in_force(codes, at), curated=curated)
        code = choose(self.partb, pick, found, RouteClass.UNKNOWN, dose)
        return self.drug(code, curated or self.curated_for(code, pick), found, pick) if code is not None else None

    # --- identification -----------------------------------------------------------------------------

    def identify(self, codings: Sequence[tuple[str, str]], names: Sequence[str], pick: Pick | None,
                 route: RouteClass, dose: Quantity | None) -> Found | None:
        at = pick.index if pick is not None else None
        for system, code in codings:
            if system == "ndc":
                found = self.by_ndc(code, at)
                if found is not None:
                    return found
        for system, code in codings:
            if system in ("hcpcs", "cpt"):
                found = self.by_code(code.strip().upper(), at)
                if found is not None:
                    return found
        for system, code in codings:
            if system in ("rxnorm", "cvx"):
                product = self.catalog.product(system, code)
                if product is not None:
                    how: IDENTIFIED_BY = "rxnorm" if system == "rxnorm" else "cvx"
                    return Found(how, self.first_in_force(product.drug.hcpcs, at), curated=product.drug,
                                 product=product)
        for name in names:
            product = self.catalog.by_name(name)
            if product is not None:
                return Found("name", self.first_in_force(product.drug.hcpcs, at), curated=product.drug,
                             product=product)
        for name in names:
            for words, codes in self.partb.by_names(name, at) if at is not None else ():
                # A name whose codes are all of another route (an oral product's "ondansetron hydrochloride")
                # gives way to a shorter one ("ondansetron") that has the injection.
                fitting = [c for c in codes if (info := self.partb.code(c, at)) is None  # type: ignore[arg-type]
                           or fits_route(info.description, route)]
                if fitting:
                    return Found("name", tuple(sorted(fitting)), name=words)
        return None

    def by_code(self, code: str, at: int | None) -> Found | None:
        """A HCPCS or CPT code in the chart that names one drug: CMS's files or the catalog know it, and it is
        not an unclassified code (J3490 says nothing of which drug). A catalog drug's codes are its own list,
        so a charted 90686 on a 2025 date is the trivalent 90656 that replaced it."""
        if code in self.drug_codes.unclassified:
            return None
        curated = self.catalog.by_code(code)
        if curated is not None:
            listed = self.first_in_force((code,), at)
            if at is not None and self.partb.known(code) and self.partb.code(listed[0], at) is None:
                listed = self.first_in_force(curated.hcpcs, at)  # not in force then: the drug's code that is
            return Found("code", listed, curated=curated)
        if self.partb.known(code):
            return Found("code", self.all_in_force((code,), at))
        if self.classes.vaccine(code):  # a vaccine CPT code, priced by CMS or not (90707, 91320): its product
            return Found("code", (code,))
        return None

    def by_ndc(self, charted: str, at: int | None) -> Found | None:
        """An NDC known to CMS's files or to the catalog; an unhyphenated 10-digit one only when one reading is."""
        forms = [f for f in ndc.candidates(charted) if self.partb.has_ndc(f) or self.catalog.has_ndc(f)]
        if len(forms) != 1:
            return None
        ndc11 = forms[0]
        product = self.catalog.product("ndc", ndc11)
        listed = self.partb.packages(ndc11, at) if at is not None else None
        if listed is not None:
            packages = listed[1]
            codes = self.all_in_force(dict.fromkeys(p.code for p in packages), at)
            return Found("ndc", codes, curated=product.drug if product else None, product=product,
                         packages=packages)
        if product is not None:
            return Found("ndc", self.first_in_force(product.drug.hcpcs, at), curated=product.drug, product=product)
        return None

    def first_in_force(self, codes: Iterable[str], at: int | None) -> tuple[str, ...]:
        """Of a catalog drug's codes in order: the first (as in force in the quarter) that the quarter lists,
        else the first as given (a code CMS never lists, such as J3490)."""
        codes = tuple(codes)
        if at is None or not codes:
            return codes[:1]
        for n, code in enumerate(codes):
            current = sorted(self.partb.in_force(code, at))
            listed = [c for c in current if self.partb.code(c, at) is not None]
            if listed:
                # Later codes of the list in force too, for the same molecule, are strengths the dose chooses
                # between (leuprolide J9217 per 7.5 mg, J1950 per 3.75 mg).
                same = molecule(self.partb.code(listed[0], at))
                return tuple(listed) + tuple(
                    c for c in codes[n + 1:] if (info := self.partb.code(c, at)) is not None and molecule(info) == same)
        return codes[:1]

    def all_in_force(self, codes: Iterable[str], at: int | None) -> tuple[str, ...]:
        """Codes that are alternatives (an NDC listed under J0881 and J0882): each as in force in the quarter,
        the ones the quarter lists, for `choose` to pick from by route, setting and dose."""
        codes = tuple(codes)
        if at is None:
            return codes
        current = sorted({c for code in codes for c in self.partb.in_force(code, at)})
        listed = [c for c in current if self.partb.code(c, at) is not None]
        return tuple(listed or current)

    # --- the drug on the date of service -----------------------------------------------------------

    def drug(self, code: str, curated: CuratedDrug | None, found: Found, pick: Pick | None) -> Drug:
        info = self.partb.code(code, pick.index) if pick is not None else None
        drug_class = curated.drug_class if curated is not None and curated.drug_class else self.classes.of(code)
        nearest = info or (self.partb.nearest_code(code, pick.index) if pick is not None else None)
        unit = unit_of(nearest, curated, drug_class)
        max_dose = None
        if curated is not None and curated.max_dose is not None and unit is not None:
            max_dose = convert(curated.max_dose.value, curated.max_dose.unit, unit.unit)
        return Drug(
            key=curated.key if curated is not None else code,
            display=curated.display if curated is not None else display_of(found, nearest, code),
            hcpcs=code,
            billing_unit=unit or Quantity(Decimal(1), nearest.dosage if nearest else "unit"),
            allowed_routes=curated.allowed_routes if curated is not None else frozenset(),
            drug_class=drug_class,
            max_dose=max_dose,
            vaccine_kind=(curated.vaccine_kind if curated else None) or self.classes.vaccine_kinds.get(code),
            quarter=pick.quarter.id if pick is not None and info is not None else None,
            quarter_fit=pick.fit if pick is not None else "in",
            former=tuple(c for c in curated.hcpcs if c != code) if curated is not None else (),
            payment_limit=info.limit if info is not None else None,
        )


class DrugCodes:
    """The codes of drug lines: those CMS's Part B files list in any quarter, the catalog's, unclassified ones."""

    def __init__(self, formulary: Formulary, noc_codes: frozenset[str]) -> None:
        self.formulary = formulary
        self.unclassified = noc_codes
        self.extra = noc_codes | {code for drug in formulary.catalog.drugs.values() for code in drug.hcpcs}

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and (code in self.extra or self.formulary.partb.known(code))


def unit_of(info: Code | None, curated: CuratedDrug | None, drug_class: DrugClass) -> Quantity | None:
    """The billing unit: one dose for a vaccine (its CPT code is per dose), else CMS's, else the catalog's."""
    if drug_class is DrugClass.VACCINE:
        return Quantity(Decimal(1), EACH)
    if info is not None:
        dosage = billing_unit(info)
        if dosage.value is not None and dosage.unit is not None:
            return Quantity(dosage.value, dosage.unit)
    return curated.billing_unit if curated is not None else None


def display_of(found: Found, info: Code | None, code: str) -> str:
    """A drug known only to CMS: the product's name (by NDC) or the name found, with CMS's description."""
    described = info.description if info is not None else code
    named = sorted({p.name for p in found.packages if p.code == code})
    name = named[0] if named else " ".join(found.name).capitalize()
    return f"{name} ({described})" if name else described


def container_of(product: Product | None) -> Container | None:
    if product is None or product.container not in ("single-dose", "multi-dose"):
        return None
    return "single-dose" if product.container == "single-dose" else "multi-dose"


# --- choosing among the codes a drug could bill under ---------------------------------------------------

def choose(partb: PartB, pick: Pick | None, found: Found, route: RouteClass, dose: Quantity | None) -> str | None:
    """One code of several: the one that fits the route, the office (not ESRD), the name, any maker (an NDC
    names its maker), then the dose; None when several still fit."""
    if len(found.codes) <= 1:
        return found.codes[0] if found.codes else None
    if pick is None:
        return None
    infos = [partb.code(c, pick.index) for c in found.codes]
    listed = [info for info in infos if info is not None]
    if len(listed) != len(infos):
        return None
    steps: list[Callable[[Code], bool]] = [
        lambda i: fits_route(i.description, route),
        lambda i: not is_esrd(i.description),
        lambda i: not found.name or set(found.name) <= description_words(i.description),
        lambda i: found.how == "ndc" or not partb.maker_specific(i),
    ]
    for keep in steps:
        kept = [i for i in listed if keep(i)]
        listed = kept or listed
        if len(listed) == 1:
            return listed[0].code
    fitted = fit_dose(listed, dose)
    return fitted.code if fitted is not None else None


def description_words(description: str) -> set[str]:
    return set(names.words(description))


def fits_route(description: str, route: RouteClass) -> bool:
    words = set(description.lower().replace(",", " ").split())
    oral = bool(words & ORAL_WORDS)
    if route is RouteClass.ORAL:
        return oral
    if oral:
        return False
    if route.is_injection:
        return not words & {"iv", "intravenous", "infusion"}
    if route in (RouteClass.IV_PUSH, RouteClass.IV_INFUSION):
        return not words & {"im", "intramuscular", "subq", "sc"}
    return True


def is_esrd(description: str) -> bool:
    text = description.lower().replace("-", " ").replace(",", " ")
    return ESRD in text.split() and not any(w in text for w in ("non esrd", "nonesrd", "non  esrd"))


def molecule(info: Code | None) -> frozenset[str]:
    """The words of a code's description that name its drug and salt (not its form, route or amount)."""
    return frozenset(names.words(info.description)) if info is not None else frozenset()


def fit_dose(codes: list[Code], dose: Quantity | None) -> Code | None:
    """The code of a drug billed in several strengths (J1020/J1030/J1040) that the dose fits: the largest
    unit that divides it, else the smallest unit. None for codes of different drugs (their descriptions differ
    but for amounts: J1010 methylprednisolone acetate, J2919 methylprednisolone sodium succinate), or a dose
    that does not convert to every code's unit."""
    if dose is None or len({molecule(info) for info in codes}) != 1:
        return None
    sized = []
    for info in codes:
        unit = billing_unit(info)
        amount = convert(dose.value, dose.unit, unit.unit) if unit.unit and unit.value else None
        if amount is None:
            return None
        sized.append((info, amount / unit.value))  # type: ignore[operator]
    whole = [(info, n) for info, n in sized if n == n.to_integral_value() and n > 0]
    if whole:
        return min(whole, key=lambda item: item[1])[0]
    return max(sized, key=lambda item: item[1])[0]


# --- the dose in billing units ------------------------------------------------------------------------

def dose_in_units(dose: Quantity | None, drug: Drug, found: Found, strength: Quantity | None,
                  curated: CuratedDrug | None = None) -> Decimal | None:
    """A charted dose in the drug's billing unit: by mass or activity; by volume through a known concentration
    (the catalog's, the Medication's strength), else the NDC's package (billable units per mL of a liquid);
    by items (vials) through the package; one per dose for a code billed per dose (a vaccine, 'PER DOSE')."""
    target = drug.billing_unit
    if target.unit == EACH:
        if dose is None:
            return target.value if drug.drug_class is DrugClass.VACCINE else None
        return dose.value if canonical(dose.unit) == EACH and dose.value > 0 else target.value
    if dose is None:
        return None
    unit = canonical(dose.unit)
    direct = convert(dose.value, dose.unit, target.unit)
    if direct is not None:
        return direct
    package = next((p for p in found.packages if p.code == drug.hcpcs), None)
    if unit == "mL":
        concentration = (found.product.per_ml if found.product else None) or strength
        if concentration is not None:
            return convert(dose.value * concentration.value, concentration.unit, target.unit)
        powder = curated is not None and curated.form == "powder"
        per_ml = units_per_ml(package) if package is not None and not powder else None
        return dose.value * per_ml * target.value if per_ml is not None else None
    if unit == EACH and package is not None:
        per_item = units_per_item(package)
        return dose.value * per_item * target.value if per_item is not None else None
    return None
