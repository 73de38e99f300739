"""The shapes of the FHIR R4 resources facts.py reads, as typing Protocols.

fhir.parse gives each resource as one of two classes: a msgspec Struct generated from fhir.resources' R4B
models (fhir.structs), or the R4B pydantic model itself (fhir.fast, for what the Structs do not take). Both have
the same elements under the same names, with the same Python values (Decimal, datetime, date, str, bool,
lists), and neither is a class mypy can name. These Protocols say which elements facts reads and what they hold,
so that `mypy --strict` checks facts against them; only the elements read are listed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol

When = dt.datetime | dt.date | None  # a FHIR date or dateTime as fhir_core gives it


class Resource(Protocol):
    id: str | None

    def get_resource_type(self) -> str: ...


class Coding(Protocol):
    system: str | None
    code: str | None
    display: str | None


class CodeableConcept(Protocol):
    coding: Sequence[Coding] | None
    text: str | None


class Reference(Protocol):
    reference: str | None
    display: str | None


class Period(Protocol):
    start: When
    end: When


class Quantity(Protocol):
    value: Decimal | None
    unit: str | None
    code: str | None


class Ratio(Protocol):
    numerator: Quantity | None
    denominator: Quantity | None


class Extension(Protocol):
    url: str | None
    valueBoolean: bool | None
    valueCoding: Coding | None


class Annotation(Protocol):
    text: str | None


class Ingredient(Protocol):
    itemCodeableConcept: CodeableConcept | None
    strength: Ratio | None


class Medication(Resource, Protocol):
    code: CodeableConcept | None
    form: CodeableConcept | None
    ingredient: Sequence[Ingredient] | None


class Ordered(Resource, Protocol):
    """What a MedicationAdministration and a MedicationRequest both have."""

    status: str  # 1..1 in both
    medicationCodeableConcept: CodeableConcept | None
    medicationReference: Reference | None
    contained: Sequence[Resource] | None
    note: Sequence[Annotation] | None
    extension: Sequence[Extension] | None
    reasonCode: Sequence[CodeableConcept] | None
    reasonReference: Sequence[Reference] | None


class AdministrationDosage(Protocol):
    text: str | None
    route: CodeableConcept | None
    dose: Quantity | None
    rateQuantity: Quantity | None
    rateRatio: Ratio | None


class MedicationAdministration(Ordered, Protocol):
    dosage: AdministrationDosage | None
    effectiveDateTime: When
    effectivePeriod: Period | None
    performer: Sequence[object] | None
    context: Reference | None


class DoseAndRate(Protocol):
    doseQuantity: Quantity | None


class Dosage(Protocol):
    text: str | None
    route: CodeableConcept | None
    doseAndRate: Sequence[DoseAndRate] | None


class MedicationRequest(Ordered, Protocol):
    dosageInstruction: Sequence[Dosage] | None
    encounter: Reference | None


class Location(Resource, Protocol):
    type: Sequence[CodeableConcept] | None


class Diagnosis(Protocol):
    condition: Reference


class Encounter(Resource, Protocol):
    period: Period | None
    diagnosis: Sequence[Diagnosis] | None
    reasonCode: Sequence[CodeableConcept] | None
    class_fhir: Coding | None  # Encounter.class (a Coding in R4)
    contained: Sequence[Resource] | None


class Condition(Resource, Protocol):
    code: CodeableConcept | None
    encounter: Reference | None
    category: Sequence[CodeableConcept] | None


class ChargeItem(Resource, Protocol):
    status: str | None
    code: CodeableConcept | None
    occurrenceDateTime: When
    occurrencePeriod: Period | None
    quantity: Quantity | None
    extension: Sequence[Extension] | None
    service: Sequence[Reference] | None


class Coverage(Resource, Protocol):
    status: str | None
    order: int | None
    type: CodeableConcept | None
    payor: Sequence[Reference] | None
