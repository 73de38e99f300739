"""The values rules read and write: facts about injections, and findings."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

CPT: Literal["cpt"] = "cpt"
HCPCS: Literal["hcpcs"] = "hcpcs"
ADMIN_96372 = "96372"


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


@dataclass(frozen=True)
class Quantity:
    value: Decimal
    unit: str


@dataclass(frozen=True)
class Drug:
    """A catalog entry: how a drug is billed."""

    key: str
    display: str
    hcpcs: str
    billing_unit: Quantity
    allowed_routes: frozenset[RouteClass]
    drug_class: DrugClass = DrugClass.OTHER
    max_dose: Quantity | None = None


@dataclass(frozen=True)
class ChargeLine:
    """A charge, captured on the encounter or suggested by a finding."""

    code: str
    system: Literal["cpt", "hcpcs"]
    units: Decimal = Decimal(1)
    modifiers: tuple[str, ...] = ()
    date_of_service: dt.date | None = None
    id: str | None = None
    service: tuple[str, ...] = ()


@dataclass(frozen=True)
class Injection:
    """One administration, or one draft order at order-sign, as billing sees it."""

    ref: str
    kind: Literal["administration", "order"]
    status: str
    drug: Drug | None = None
    drug_coded: bool = False  # identified by an RxNorm, NDC or HCPCS coding, not by text
    drug_text: str | None = None
    route: RouteClass = RouteClass.UNKNOWN
    route_coded: bool = False
    dose: Decimal | None = None  # in drug.billing_unit.unit
    date_of_service: dt.date | None = None
    performer: bool = False
    diagnoses: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        """Given (an administration) or about to be given (an order being signed)."""
        if self.kind == "order":
            return self.status in ("draft", "active")
        return self.status == "completed"

    @property
    def drug_units(self) -> int | None:
        """Billing units of the drug line: ceil(dose / unit size), as HCPCS "up to" codes require."""
        if self.drug is None or self.dose is None or self.dose <= 0:
            return None
        return max(1, math.ceil(self.dose / self.drug.billing_unit.value))


@dataclass(frozen=True)
class InvalidResource:
    """A resource that could not be read as FHIR R4."""

    where: str  # prefetch key or context field
    resource_type: str
    resource_id: str | None
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Visit:
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


@dataclass(frozen=True)
class Finding:
    """One rule's verdict about one injection, or about the visit as a whole."""

    rule: str = ""
    subject: str | None = None  # Injection.ref, or None for the visit
    creates: tuple[ChargeLine, ...] = ()
    updates: tuple[ChargeLine, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
