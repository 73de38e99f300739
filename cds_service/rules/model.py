"""The values rules read and write: facts about injections, payer profiles, and findings.

They are frozen msgspec Structs: immutable and compared by value like frozen dataclasses, and built in C,
about seven times faster (a hook call builds some 40 of them; `msgspec.structs.replace` copies one).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from msgspec import Struct, field

CPT: Literal["cpt"] = "cpt"
HCPCS: Literal["hcpcs"] = "hcpcs"
ADMIN_96372 = "96372"
CodeSystem = Literal["cpt", "hcpcs"]


HCPCS_LEVEL_II = re.compile(r"[A-V]\d{4}")
# More units of service than any claim line carries (an 837P quantity has 15 digits; MUEs run to thousands):
# a dose that comes to more is a charting error, billed as no drug line at all.
MAX_UNITS = 999_999


def code_system(code: str) -> CodeSystem:
    """CPT codes are five digits (or four and a letter); HCPCS Level II codes are a letter and four digits."""
    return HCPCS if HCPCS_LEVEL_II.fullmatch(code) else CPT


class RouteClass(StrEnum):
    SC = "SC"
    IM = "IM"
    IV_PUSH = "IV_PUSH"
    IV_INFUSION = "IV_INFUSION"
    INTRA_ARTERIAL = "INTRA_ARTERIAL"
    ORAL = "ORAL"
    OTHER = "OTHER"
    UNKNOWN = "UNKNOWN"

    @property
    def is_injection(self) -> bool:
        """SC and IM: the routes CPT 96372 covers."""
        return self in (RouteClass.SC, RouteClass.IM)


class DrugClass(StrEnum):
    VACCINE = "vaccine"
    ANTINEOPLASTIC_HORMONAL = "antineoplastic-hormonal"
    ANTINEOPLASTIC_NON_HORMONAL = "antineoplastic-non-hormonal"
    COMPOUNDED = "compounded"
    OTHER = "other"


class Setting(StrEnum):
    NON_FACILITY = "non-facility"
    FACILITY = "facility"
    UNKNOWN = "unknown"


class Quantity(Struct, frozen=True):
    value: Decimal
    unit: str


class Drug(Struct, frozen=True):
    """A drug as billed on one date of service: its code, billing unit and class, and what the configured
    catalog adds (routes, usual maximum; `key` names it in payer profiles)."""

    key: str
    display: str
    hcpcs: str  # its billing code: HCPCS Level II, or a CPT product code for vaccines
    billing_unit: Quantity
    allowed_routes: frozenset[RouteClass]
    drug_class: DrugClass = DrugClass.OTHER
    max_dose: Decimal | None = None  # in billing_unit.unit
    vaccine_kind: str | None = None  # influenza, pneumococcal, hepatitis-b: Medicare G0008/G0009/G0010
    quarter: str | None = None  # the CMS quarter the code, billing unit and payment limit come from
    quarter_fit: Literal["in", "after", "before", "gap"] = "in"  # where the date of service is against that quarter
    payment_limit: Decimal | None = None  # Medicare Part B's payment limit per billing unit, that quarter
    former: tuple[str, ...] = ()  # the catalog's other codes for the drug (90686 of the trivalent 90656)

    @property
    def code_system(self) -> CodeSystem:
        return code_system(self.hcpcs)


class Frequency(Struct, frozen=True):
    """How often a drug may be given: a minimum interval, except in a loading phase (BILLING-FACTS)."""

    min_interval_days: int
    loading_max_doses: int = 0
    loading_window_days: int = 0


class PayerProfile(Struct, frozen=True):
    """What one kind of payer asks for, selected from Coverage."""

    key: str
    display: str
    waste_modifiers: bool = False  # JZ/JW (Medicare Part B)
    medicare_vaccine_codes: bool = False  # G0008/G0009/G0010 instead of 90471/90472
    multiple_injection_modifier: str | None = None  # 59 or XU on the second and later 96372 lines
    self_administered: frozenset[str] = frozenset()  # drug keys
    covered_diagnoses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # drug key -> ICD-10 prefixes
    frequency: Mapping[str, Frequency] = field(default_factory=dict)  # drug key -> limits

    # The lists name a drug by its catalog key or by its HCPCS code (a MAC's SAD list is by code).
    def self_administers(self, drug: Drug) -> bool:
        return drug.key in self.self_administered or drug.hcpcs in self.self_administered

    def covered(self, drug: Drug) -> tuple[str, ...] | None:
        return self.covered_diagnoses.get(drug.key) or self.covered_diagnoses.get(drug.hcpcs)

    def frequency_of(self, drug: Drug) -> Frequency | None:
        return self.frequency.get(drug.key) or self.frequency.get(drug.hcpcs)


class BillingPolicy(Struct, frozen=True, dict=True):  # dict: room for its cached_property
    """Code tables from configuration that more than one rule needs."""

    admin_codes: Mapping[str, str] = field(default_factory=dict)  # iv_push, iv_push_additional, ...
    medicare_vaccine_codes: Mapping[str, str] = field(default_factory=dict)  # vaccine kind -> G code
    em_needing_25: frozenset[str] = frozenset()
    em_bundled: frozenset[str] = frozenset()
    noc_codes: frozenset[str] = frozenset()

    @cached_property
    def administration_codes(self) -> frozenset[str]:
        return frozenset({ADMIN_96372, *self.admin_codes.values(), *self.medicare_vaccine_codes.values()})


class ChargeLine(Struct, frozen=True):
    """A charge, captured on the encounter or suggested by a finding."""

    code: str
    system: CodeSystem
    units: Decimal = Decimal(1)
    modifiers: tuple[str, ...] = ()
    date_of_service: dt.date | None = None
    id: str | None = None
    service: tuple[str, ...] = ()
    drug: bool = False  # a captured line whose code is a drug's (CMS's Part B files, the catalog, a NOC code)
    # A drug code not in force on the line's date (code-not-current): CMS "dropped" it before, or lists it only
    # from a later quarter ("not-yet"); with the codes in force instead where CMS's files show them, and that
    # date's quarter.
    stale: Literal["dropped", "not-yet"] | None = None
    current: tuple[str, ...] = ()
    quarter: str | None = None

    def rests_on(self, inj: Injection) -> bool:
        """A charge rests on an admin it references, or, referencing none, on an admin of its date."""
        if self.service:
            return inj.ref in self.service
        return self.date_of_service is None or self.date_of_service == inj.date_of_service


class Injection(Struct, frozen=True):
    """One administration, or one draft order at order-sign, as billing sees it."""

    ref: str
    kind: Literal["administration", "order"]
    status: str
    drug: Drug | None = None
    drug_coded: bool = False  # an RxNorm, NDC, CVX or HCPCS coding is present
    drug_text: str | None = None
    drug_candidates: tuple[str, ...] = ()  # codes a name left open (no drug chosen among them)
    vaccine: bool = False  # coded as a vaccine (CVX, a vaccine CPT code), even one not identified
    ndc: str | None = None
    container: Literal["single-dose", "multi-dose"] | None = None
    route: RouteClass = RouteClass.UNKNOWN
    route_coded: bool = False
    dose: Decimal | None = None  # in drug.billing_unit.unit
    dose_documented: bool = False  # a dose quantity is charted, even one that cannot be converted
    at: dt.datetime | None = None  # when given, in the encounter's time zone
    timed: bool = False  # effective[x] carries a time of day
    date_of_service: dt.date | None = None
    performer: bool = False
    patient_supplied: bool = False
    diagnoses: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        """Given (an administration) or about to be given (an order being signed)."""
        if self.kind == "order":
            return self.status in ("draft", "active")
        return self.status == "completed"

    @property
    def is_vaccine(self) -> bool:
        """A vaccine: by its drug's class, or by its coding (CVX, a vaccine CPT code) when not identified."""
        return self.drug.drug_class is DrugClass.VACCINE if self.drug is not None else self.vaccine

    @property
    def drug_units(self) -> int | None:
        """Billing units of the drug line: ceil(dose / unit size), as HCPCS "up to" codes require; None for
        no dose, or one past MAX_UNITS (see implausible_dose)."""
        if self.implausible_dose or self.drug is None or self.dose is None or self.dose <= 0:
            return None
        return max(1, math.ceil(self.dose / self.drug.billing_unit.value))

    @property
    def implausible_dose(self) -> bool:
        """A dose of more than MAX_UNITS billing units (1e308 mg, 1e20 mcg): charted wrongly, not billable."""
        if self.drug is None or self.dose is None or not self.dose.is_finite():
            return self.dose is not None and not self.dose.is_finite()
        return self.dose / self.drug.billing_unit.value > MAX_UNITS


class InvalidResource(Struct, frozen=True):
    """A resource that could not be read as FHIR R4."""

    where: str  # prefetch key or context field
    resource_type: str
    resource_id: str | None
    problems: tuple[str, ...]


class PlannedLines(Struct, frozen=True):
    """The lines one injection should be billed with, whoever suggests them."""

    admin: ChargeLine | None = None
    drug: ChargeLine | None = None


class Visit(Struct, frozen=True):
    """Everything the rules see for one hook call."""

    hook_kind: Literal["order-sign", "encounter"]
    patient_ref: str
    encounter_ref: str | None = None
    setting: Setting = Setting.UNKNOWN
    date_of_service: dt.date | None = None
    injections: tuple[Injection, ...] = ()
    history: tuple[Injection, ...] = ()
    charges: tuple[ChargeLine, ...] = ()
    invalid: tuple[InvalidResource, ...] = ()
    repaired: tuple[InvalidResource, ...] = ()  # read after repairing near-misses of R4 (fhir.repair)
    payer: PayerProfile | None = None
    policy: BillingPolicy = field(default_factory=BillingPolicy)
    plan: Mapping[str, PlannedLines] = field(default_factory=dict)  # by Injection.ref; see rules.prepare
    prepared: bool = False  # rules.prepare has filled `plan` (which may be empty: nothing billable)


class Finding(Struct, frozen=True):
    """One rule's verdict about one injection, or about the visit as a whole."""

    rule: str = ""
    subject: str | None = None  # Injection.ref, or None for the visit
    creates: tuple[ChargeLine, ...] = ()
    updates: tuple[ChargeLine, ...] = ()
    deletes: tuple[str, ...] = ()  # ChargeItem ids
    detail: Mapping[str, Any] = field(default_factory=dict)
    indicator: str | None = None  # this card's, instead of the rule's configured one
